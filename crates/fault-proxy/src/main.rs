//! `fault-proxy`: the test proxy as a program, for the benchmark script.
//!
//! fault-proxy --upstream 127.0.0.1:PORT [--listen 127.0.0.1:0] [--seed N] [--stall SECONDS]
//!             [--rate BYTES_PER_SECOND] [--rule KINDS:FAULT@WHEN]... [--counters FILE]
//!
//! Prints the port it listens on (one line), then runs until killed, writing what it injected
//! to FILE every second.

use fault_proxy::{Proxy, Rule};
use std::io::Write;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("fault-proxy: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let (mut upstream, mut listen, mut seed, mut stall) = (None, "127.0.0.1:0".to_owned(), 1u64, None);
    let mut rate = None;
    let (mut rules, mut counters) = (Vec::new(), None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} wants a value"));
        match a.as_str() {
            "--upstream" => upstream = Some(value()?),
            "--listen" => listen = value()?,
            "--seed" => seed = value()?.parse().map_err(|_| "--seed: a number")?,
            "--stall" => stall = Some(value()?.parse::<f64>().map_err(|_| "--stall: seconds")?),
            "--rate" => rate = Some(value()?.parse::<u64>().map_err(|_| "--rate: bytes per second")?),
            "--rule" => rules.push(Rule::parse(&value()?)?),
            "--counters" => counters = Some(value()?),
            _ => return Err(format!("{a}: unknown (see the source's first lines)")),
        }
    }
    let upstream = upstream.ok_or("--upstream HOST:PORT is required")?;
    let resolve = |s: &str| s.parse().map_err(|_| format!("{s}: not an IP:PORT"));
    let proxy = Proxy::listen(resolve(&listen)?, resolve(&upstream)?, seed, rules).map_err(|e| e.to_string())?;
    if let Some(s) = stall {
        proxy.set_stall(Duration::from_secs_f64(s));
    }
    if let Some(r) = rate {
        proxy.set_rate(r);
    }
    println!("{}", proxy.port());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(path) = &counters {
            let requests: u64 = fault_proxy::KINDS.iter().map(|k| proxy.seen(*k)).sum();
            let line = format!("injected {} of {requests} requests: {}\n", proxy.injected(None, None), proxy.report());
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, line).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}
