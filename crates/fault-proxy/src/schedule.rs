//! What the proxy injects, and when: request kinds, faults, rules and a seeded schedule.

use std::time::{Duration, Instant};

/// What an S3 request does, told from its method, query and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// GetObject, whole or ranged.
    Get,
    Head,
    /// PutObject (and anything else PUT that is not a part or a copy).
    Put,
    /// UploadPart.
    Part,
    /// UploadPartCopy (`x-amz-copy-source` on a part).
    CopyPart,
    /// CopyObject.
    Copy,
    /// CreateMultipartUpload.
    Create,
    /// CompleteMultipartUpload.
    Complete,
    /// AbortMultipartUpload.
    Abort,
    /// ListObjectsV2, first page.
    List,
    /// ListObjectsV2, a later page (with `continuation-token`).
    ListNext,
    /// DeleteObject, DeleteObjects.
    Delete,
    /// Anything else (ListMultipartUploads, bucket requests).
    Other,
}

pub const KINDS: [Kind; 13] = [
    Kind::Get,
    Kind::Head,
    Kind::Put,
    Kind::Part,
    Kind::CopyPart,
    Kind::Copy,
    Kind::Create,
    Kind::Complete,
    Kind::Abort,
    Kind::List,
    Kind::ListNext,
    Kind::Delete,
    Kind::Other,
];

impl Kind {
    /// The kind of a request: `target` is the path and query as sent, `header` looks a header up.
    pub fn of(method: &str, target: &str, header: impl Fn(&str) -> Option<String>) -> Self {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
        let copy = header("x-amz-copy-source").is_some();
        match method {
            "GET" if has("list-type") && has("continuation-token") => Kind::ListNext,
            "GET" if has("list-type") => Kind::List,
            "GET" if has("uploads") || !object_path(target) => Kind::Other,
            "GET" => Kind::Get,
            "HEAD" if object_path(target) => Kind::Head,
            "PUT" if has("partNumber") && copy => Kind::CopyPart,
            "PUT" if has("partNumber") => Kind::Part,
            "PUT" if copy => Kind::Copy,
            "PUT" if object_path(target) => Kind::Put,
            "POST" if has("uploads") => Kind::Create,
            "POST" if has("uploadId") => Kind::Complete,
            "POST" if has("delete") => Kind::Delete,
            "DELETE" if has("uploadId") => Kind::Abort,
            "DELETE" if object_path(target) => Kind::Delete,
            _ => Kind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Head => "head",
            Kind::Put => "put",
            Kind::Part => "part",
            Kind::CopyPart => "copypart",
            Kind::Copy => "copy",
            Kind::Create => "create",
            Kind::Complete => "complete",
            Kind::Abort => "abort",
            Kind::List => "list",
            Kind::ListNext => "listnext",
            Kind::Delete => "delete",
            Kind::Other => "other",
        }
    }
}

/// A path-style target names an object (`/bucket/key`), not a bucket (`/bucket`).
fn object_path(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    path.trim_start_matches('/').split_once('/').is_some_and(|(_, key)| !key.is_empty())
}

/// What the client gets instead of (or after) the store's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// 500 InternalError, not forwarded.
    Status500,
    /// 403 AccessDenied, not forwarded: a refusal no retry cures.
    Status403,
    /// 503 with an empty body.
    Status503,
    /// 503 with S3's `SlowDown` XML body.
    SlowDown,
    /// 503 `SlowDown` with `Retry-After: 1`.
    SlowDownRetryAfter,
    /// The connection reset before any status.
    Reset,
    /// Forwarded; the head and half the body sent, then a reset.
    ResetBody,
    /// Forwarded; the full `Content-Length` announced, half the body sent, then closed.
    Short,
    /// No answer for the proxy's stall time, then closed.
    Stall,
    /// Forwarded (the store did it), then 500 to the client.
    Forward500,
    /// Forwarded (the store did it), then the connection reset before the status.
    ForwardReset,
    /// One of 500, 503 SlowDown, reset (and for GET, a short body), by the schedule's dice.
    Mix,
    /// Forwarded through a slow link: the request's body read, and the answer's body sent, at
    /// the proxy's rate (bytes/s, per connection).
    Throttle,
}

pub const FAULTS: [Fault; 13] = [
    Fault::Status500,
    Fault::Status403,
    Fault::Status503,
    Fault::SlowDown,
    Fault::SlowDownRetryAfter,
    Fault::Reset,
    Fault::ResetBody,
    Fault::Short,
    Fault::Stall,
    Fault::Forward500,
    Fault::ForwardReset,
    Fault::Mix,
    Fault::Throttle,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Status500 => "500",
            Fault::Status403 => "403",
            Fault::Status503 => "503",
            Fault::SlowDown => "slowdown",
            Fault::SlowDownRetryAfter => "slowdown-retry-after",
            Fault::Reset => "reset",
            Fault::ResetBody => "reset-body",
            Fault::Short => "short",
            Fault::Stall => "stall",
            Fault::Forward500 => "forward-500",
            Fault::ForwardReset => "forward-reset",
            Fault::Mix => "mix",
            Fault::Throttle => "throttle",
        }
    }
}

/// When a rule fires, among the requests of its kinds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Each request with this probability (0..=1).
    Chance(f64),
    /// The Nth request of the rule's kind (1-based, counted per kind).
    Nth(u64),
    /// Every request until this instant (an outage).
    Until(Instant),
    /// Every request.
    Always,
}

/// A fault for some kinds of requests (none: every kind), and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kinds: Vec<Kind>,
    pub fault: Fault,
    pub when: When,
}

impl Rule {
    pub fn new(kinds: &[Kind], fault: Fault, when: When) -> Self {
        Self { kinds: kinds.to_vec(), fault, when }
    }

    /// Every kind fails with `fault` for `t` from now.
    pub fn outage(fault: Fault, t: Duration) -> Self {
        Self::new(&[], fault, When::Until(Instant::now() + t))
    }

    fn covers(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// Parses `KINDS:FAULT@WHEN`: KINDS is `*` or names joined by `+` (`get+head`), WHEN is
    /// `p=0.05`, `n=3`, `for=10s` (from now), or `always`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s}: {why} (KINDS:FAULT@WHEN, e.g. get+head:503@p=0.05)");
        let (kinds, rest) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let (fault, when) = rest.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let kinds = match kinds.trim() {
            "*" => Vec::new(),
            list => list
                .split('+')
                .map(|k| KINDS.iter().copied().find(|x| x.name() == k.trim()).ok_or_else(|| bad("unknown kind")))
                .collect::<Result<_, _>>()?,
        };
        let fault = FAULTS.iter().copied().find(|f| f.name() == fault.trim()).ok_or_else(|| bad("unknown fault"))?;
        let when = match when.trim().split_once('=') {
            None if when.trim() == "always" => When::Always,
            Some(("p", v)) => match v.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => When::Chance(p),
                _ => return Err(bad("p must be between 0 and 1")),
            },
            Some(("n", v)) => When::Nth(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("n counts from 1"))?),
            Some(("for", v)) => {
                let secs: f64 = v.trim_end_matches('s').parse().map_err(|_| bad("for=SECONDSs"))?;
                When::Until(Instant::now() + Duration::from_secs_f64(secs))
            }
            _ => return Err(bad("unknown WHEN")),
        };
        Ok(Self { kinds, fault, when })
    }
}

/// A small deterministic generator (splitmix64): the same seed, the same dice.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The rules, the dice, and how many requests of each kind were seen.
#[derive(Debug)]
pub struct Schedule {
    pub rules: Vec<Rule>,
    rng: Rng,
    seen: [u64; KINDS.len()],
}

impl Schedule {
    pub fn new(seed: u64, rules: Vec<Rule>) -> Self {
        Self { rules, rng: Rng::new(seed), seen: [0; KINDS.len()] }
    }

    pub fn seen(&self, kind: Kind) -> u64 {
        self.seen[kind as usize]
    }

    /// Counts a request of `kind` and says what to do to it: the first rule that fires wins;
    /// a `Mix` is resolved here.
    pub fn decide(&mut self, kind: Kind, now: Instant) -> Option<Fault> {
        self.seen[kind as usize] += 1;
        let n = self.seen[kind as usize];
        let mut chosen = None;
        for r in self.rules.iter().filter(|r| r.covers(kind)) {
            // Every chance rule throws its dice, so one rule's outcome does not shift another's.
            let fires = match r.when {
                When::Chance(p) => self.rng.unit() < p,
                When::Nth(k) => n == k,
                When::Until(t) => now < t,
                When::Always => true,
            };
            if fires && chosen.is_none() {
                chosen = Some(r.fault);
            }
        }
        chosen.map(|f| match f {
            Fault::Mix => {
                let choices: &[Fault] = match kind {
                    Kind::Get => &[Fault::Status500, Fault::SlowDown, Fault::Reset, Fault::Short],
                    _ => &[Fault::Status500, Fault::SlowDown, Fault::Reset],
                };
                choices[(self.rng.next_u64() % choices.len() as u64) as usize]
            }
            f => f,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: &str, target: &str, headers: &[(&str, &str)]) -> Kind {
        Kind::of(method, target, |h| {
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn requests_are_told_apart() {
        assert_eq!(kind("GET", "/b/k.coffer", &[("range", "bytes=0-9")]), Kind::Get);
        assert_eq!(kind("HEAD", "/b/k", &[]), Kind::Head);
        assert_eq!(kind("PUT", "/b/k", &[]), Kind::Put);
        assert_eq!(kind("PUT", "/b", &[]), Kind::Other, "a bucket");
        assert_eq!(kind("PUT", "/b/k?partNumber=2&uploadId=x", &[]), Kind::Part);
        assert_eq!(kind("PUT", "/b/k?partNumber=2&uploadId=x", &[("x-amz-copy-source", "/b/k")]), Kind::CopyPart);
        assert_eq!(kind("PUT", "/b/k2", &[("x-amz-copy-source", "/b/k")]), Kind::Copy);
        assert_eq!(kind("POST", "/b/k?uploads", &[]), Kind::Create);
        assert_eq!(kind("POST", "/b/k?uploads=", &[]), Kind::Create);
        assert_eq!(kind("POST", "/b/k?uploadId=x", &[]), Kind::Complete);
        assert_eq!(kind("POST", "/b?delete", &[]), Kind::Delete);
        assert_eq!(kind("DELETE", "/b/k?uploadId=x", &[]), Kind::Abort);
        assert_eq!(kind("DELETE", "/b/k", &[]), Kind::Delete);
        assert_eq!(kind("GET", "/b?list-type=2&prefix=p%2F", &[]), Kind::List);
        assert_eq!(kind("GET", "/b?continuation-token=abc&list-type=2", &[]), Kind::ListNext);
        assert_eq!(kind("GET", "/b?uploads", &[]), Kind::Other);
        assert_eq!(kind("GET", "/", &[]), Kind::Other);
    }

    #[test]
    fn rules_parse_and_refuse() {
        let r = Rule::parse("get+head:slowdown@p=0.05").unwrap();
        assert_eq!((r.kinds, r.fault, r.when), (vec![Kind::Get, Kind::Head], Fault::SlowDown, When::Chance(0.05)));
        let r = Rule::parse("*:forward-500@n=2").unwrap();
        assert_eq!((r.kinds.len(), r.fault, r.when), (0, Fault::Forward500, When::Nth(2)));
        assert_eq!(Rule::parse("complete:reset@always").unwrap().when, When::Always);
        assert_eq!(Rule::parse("put+part:throttle@always").unwrap().fault, Fault::Throttle);
        assert_eq!(Rule::parse("get:403@n=1").unwrap().fault, Fault::Status403);
        assert!(matches!(Rule::parse("*:stall@for=2.5s").unwrap().when, When::Until(_)));
        for bad in ["get:500", "get@p=1", "nope:500@p=0.1", "get:teapot@p=0.1", "get:500@p=2", "get:500@n=0"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_seed_throws_the_same_dice() {
        let rules = vec![Rule::parse("*:mix@p=0.3").unwrap()];
        let run = |seed| {
            let mut s = Schedule::new(seed, rules.clone());
            (0..200).map(|i| s.decide(KINDS[i % KINDS.len()], Instant::now())).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|f| f.is_some()).count();
        assert!((30..90).contains(&hits), "about 30% of 200: {hits}");
        assert!(run(7).iter().all(|f| *f != Some(Fault::Mix)), "a mix is resolved");
    }

    #[test]
    fn nth_and_outages_fire_when_they_say() {
        let now = Instant::now();
        let mut s = Schedule::new(1, vec![Rule::new(&[Kind::Complete], Fault::Forward500, When::Nth(2))]);
        let got: Vec<_> = (0..4).map(|_| s.decide(Kind::Complete, now)).collect();
        assert_eq!(got, [None, Some(Fault::Forward500), None, None]);
        assert_eq!(s.decide(Kind::Get, now), None, "another kind");
        assert_eq!(s.seen(Kind::Complete), 4);
        let mut s = Schedule::new(1, vec![Rule::outage(Fault::Status503, Duration::from_secs(60))]);
        assert_eq!(s.decide(Kind::List, now), Some(Fault::Status503));
        assert_eq!(s.decide(Kind::Put, now + Duration::from_secs(61)), None, "over");
        let mut u = Rng::new(3);
        assert!((0..1000).map(|_| u.unit()).all(|x| (0.0..1.0).contains(&x)));
    }
}
