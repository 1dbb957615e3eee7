//! A small blocking client of the MySQL/MariaDB wire protocol: enough to authenticate, run a
//! query, and read the binary log as a replica does (`COM_BINLOG_DUMP`), the event bytes
//! exactly as the server's files hold them.
//!
//! Why not a crate: `mysql_async` 0.37 cannot ask MariaDB for its ANNOTATE_ROWS events (the
//! dump flag is masked), so its archives would differ from the server's files; it also parses
//! and copies every event and pulls in an async runtime. What is needed here is a few hundred
//! lines (handshake, `mysql_native_password`, packets, text results, the dump).
//!
//! Every byte from the server is untrusted (without TLS, anyone on the path may write them):
//! an event is bounded by [`MAX_PACKET`], a result by a [`ResultCap`] counted as it arrives,
//! memory grows with the bytes received (never with what a length claims), lengths are checked
//! before use, and nothing here panics on any input.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The largest packet (an event) read: MySQL's and MariaDB's own ceiling. Not the server's
/// `max_allowed_packet`: a row event holds a row's images before and after, each up to it, and
/// the server's dump thread lifts its own limit to this ceiling to send such events (as a
/// replica's `slave_max_allowed_packet`, 1 GiB by default, reads them).
pub const MAX_PACKET: usize = 1 << 30;

/// The most columns a result has: the servers' own limit (a table's, a select list's).
pub const MAX_COLUMNS: u64 = 4096;

/// One row of a text result: each column a string or NULL.
pub type Row = Vec<Option<String>>;

/// The most one result may hold; a result beyond it is refused as it arrives. Its bytes count
/// what the rows take in memory (each row and each cell its own size, NULL or not, beyond its
/// text), and every packet of the result before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultCap {
    pub rows: usize,
    pub bytes: usize,
}

impl ResultCap {
    /// Enough for coffer's largest results (a drill lists every table of a server: a million
    /// tables, or 128 MiB of names), far below what hurts the host.
    pub const DEFAULT: ResultCap = ResultCap { rows: 1_000_000, bytes: 128 << 20 };
    /// For a query that returns a row or a few (a variable, a position).
    pub const FEW: ResultCap = ResultCap { rows: 100, bytes: 1 << 20 };
}

/// Capability flags (the protocol's `CLIENT_*`).
mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
}

/// Why a conversation with the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server's own error packet.
    #[error("the server says: ERROR {code} ({state}): {message}")]
    Server { code: u16, state: String, message: String },
    /// Bytes that are not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS asked for and not given.
    #[error("TLS: {0}")]
    Tls(String),
    /// An authentication method coffer does not speak.
    #[error("the server asks for authentication by {0:?}, which coffer's client does not speak (use mysql_native_password for the archiving user)")]
    AuthMethod(String),
    /// More than this client takes from one answer (`limit`: "100 rows", "128 MiB").
    #[error("the server sent more than {limit} for {what}; refusing")]
    TooLarge { limit: String, what: String },
    /// An earlier error left the connection in the middle of an answer.
    #[error("the connection cannot be used after an earlier error ({0})")]
    Broken(String),
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

fn bad(what: impl Into<String>) -> ClientError {
    ClientError::Protocol(what.into())
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Socket(PathBuf),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<coffer_net::tls::ClientStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A reader over a packet's payload that never reads past its end.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() {
            return Err(bad(format!("a field of {n} bytes where {} remain", self.b.len())));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    /// A NUL-terminated string (the rest if no NUL).
    fn nul_str(&mut self) -> &'a [u8] {
        let end = self.b.iter().position(|c| *c == 0).unwrap_or(self.b.len());
        let s = &self.b[..end];
        self.b = self.b.get(end + 1..).unwrap_or(&[]);
        s
    }
    /// A length-encoded integer; `None` for the NULL marker (0xFB).
    fn lenenc(&mut self) -> Result<Option<u64>> {
        Ok(Some(match self.u8()? {
            0xfb => return Ok(None),
            0xfc => u64::from(self.u16()?),
            0xfd => {
                let b = self.take(3)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xfe => u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")),
            0xff => return Err(bad("0xff is no length")),
            n => u64::from(n),
        }))
    }
    fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>> {
        match self.lenenc()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| bad("a length beyond memory"))?;
                self.take(n).map(Some)
            }
        }
    }
}

/// The server's error packet (`0xFF`), as an error.
fn server_error(p: &[u8]) -> ClientError {
    let mut c = Cursor { b: p.get(1..).unwrap_or(&[]) };
    let code = c.u16().unwrap_or(0);
    let (state, message) = match c.b.first() {
        Some(b'#') if c.b.len() >= 6 => (String::from_utf8_lossy(&c.b[1..6]).into_owned(), &c.b[6..]),
        _ => (String::new(), c.b),
    };
    // One line, no control characters: it ends up on a terminal.
    let message: String =
        String::from_utf8_lossy(message).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    ClientError::Server { code, state, message }
}

/// The most a packet of the handshake and authentication takes (a greeting is about 100 bytes).
const HANDSHAKE_PACKET: usize = 64 << 10;

/// What each row and each cell of a result costs beyond its text: a NULL too, so that a packet
/// of NULL markers (one byte each) is counted as what it becomes.
const ROW_COST: usize = std::mem::size_of::<Row>();
const CELL_COST: usize = std::mem::size_of::<Option<String>>();

/// `n` bytes in words ("128 MiB", "64 KiB").
fn size_text(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A query as an error names it: its start, on one line.
fn query_kind(sql: &str) -> String {
    let words = sql.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty());
    let text = words.collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(48) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Reads one packet from `r` (joining the 16 MiB pieces of a larger one), of at most `limit`
/// bytes (`over`: the error beyond it); `seq` becomes the number our next packet takes. Memory
/// grows with the bytes that arrive, at most 1 MiB ahead of them, never with what a piece's
/// header claims.
fn read_packet_from(r: &mut impl Read, seq: &mut u8, limit: usize, over: impl Fn() -> ClientError) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 4];
        r.read_exact(&mut head)?;
        let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
        *seq = head[3].wrapping_add(1);
        if out.len().saturating_add(len) > limit {
            return Err(over());
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(1 << 20);
            let start = out.len();
            out.resize(start + n, 0);
            r.read_exact(&mut out[start..])?;
            left -= n;
        }
        if len < 0xff_ffff {
            return Ok(out);
        }
    }
}

/// What a result has taken so far of its cap.
struct Taken<'a> {
    cap: ResultCap,
    what: &'a str,
    bytes: usize,
}

impl Taken<'_> {
    fn over(&self, limit: String) -> ClientError {
        ClientError::TooLarge { limit, what: self.what.to_owned() }
    }

    fn over_bytes(&self) -> ClientError {
        self.over(size_text(self.cap.bytes))
    }

    fn charge(&mut self, n: usize) -> Result<()> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.cap.bytes {
            return Err(self.over_bytes());
        }
        Ok(())
    }

    /// The next packet, of at most what is left of the cap (not yet counted).
    fn packet(&self, r: &mut impl Read, seq: &mut u8) -> Result<Vec<u8>> {
        read_packet_from(r, seq, self.cap.bytes.saturating_sub(self.bytes), || self.over_bytes())
    }

    /// A row of `columns` cells, each counted before its text is copied.
    fn row(&mut self, p: &[u8], columns: usize) -> Result<Row> {
        self.charge(ROW_COST)?;
        let mut c = Cursor { b: p };
        let mut row = Vec::with_capacity(columns);
        for _ in 0..columns {
            let cell = c.lenenc_bytes()?;
            self.charge(CELL_COST + cell.map_or(0, <[u8]>::len))?;
            let text = cell.map(|v| String::from_utf8_lossy(v).into_owned());
            // Bytes that are not UTF-8 grow into replacement characters.
            self.charge(text.as_ref().map_or(0, String::len).saturating_sub(cell.map_or(0, <[u8]>::len)))?;
            row.push(text);
        }
        if !c.b.is_empty() {
            return Err(bad("a row longer than its columns"));
        }
        Ok(row)
    }
}

/// Reads the answer to a query (text protocol) from `r`, as [`Client::query`] does: the rows
/// of a result, none for a statement without one; refused once it holds more than `cap`
/// (`what` names the query in the error). Public for the fuzzer.
pub fn read_result(r: &mut impl Read, seq: &mut u8, what: &str, cap: ResultCap) -> Result<Vec<Row>> {
    let mut t = Taken { cap, what, bytes: 0 };
    let first = t.packet(r, seq)?;
    t.charge(4 + first.len())?;
    let columns = match first.first() {
        Some(0x00) => return Ok(Vec::new()),
        Some(0xff) => return Err(server_error(&first)),
        _ => Cursor { b: &first }.lenenc()?.ok_or_else(|| bad("a NULL column count"))?,
    };
    if columns > MAX_COLUMNS {
        return Err(t.over(format!("{MAX_COLUMNS} columns")));
    }
    // The column definitions and the EOF after them: counted, not kept.
    for _ in 0..=columns {
        let p = t.packet(r, seq)?;
        t.charge(4 + p.len())?;
    }
    let mut rows = Vec::new();
    loop {
        let p = t.packet(r, seq)?;
        match p.first() {
            Some(0xfe) if p.len() < 9 => return Ok(rows),
            Some(0xff) => return Err(server_error(&p)),
            _ if rows.len() >= cap.rows => return Err(t.over(format!("{} rows", cap.rows))),
            _ => rows.push(t.row(&p, columns as usize)?),
        }
    }
}

/// `COM_BINLOG_DUMP`'s body: where to start, the flags, the replica's id, the file's name.
fn dump_body(file: &str, position: u32, server_id: u32, flags: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(10 + file.len());
    body.extend_from_slice(&position.to_le_bytes());
    body.extend_from_slice(&flags.to_le_bytes());
    body.extend_from_slice(&server_id.to_le_bytes());
    body.extend_from_slice(file.as_bytes());
    body
}

/// The statement that gives a GTID dump its start; `state` must be a MariaDB GTID position
/// (digits, '-' and ','), so nothing in it needs quoting.
fn connect_state_sql(state: &str) -> Result<String> {
    if !crate::meta::is_mariadb_gtid_list(state) {
        return Err(bad(format!("{state:?} is not a MariaDB GTID position")));
    }
    Ok(format!("SET @slave_connect_state = '{state}'"))
}

/// `mysql_native_password`'s answer to the server's 20-byte `scramble`:
/// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty for an empty password.
pub fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = coffer_crypto::sha1_for_mysql_auth(&[password]);
    let stage2 = coffer_crypto::sha1_for_mysql_auth(&[&stage1]);
    let mix = coffer_crypto::sha1_for_mysql_auth(&[scramble, &stage2]);
    stage1.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// The server's first packet (protocol version 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: String,
    pub capabilities: u32,
    /// The 20 bytes an authentication answer is computed from.
    pub scramble: Vec<u8>,
    pub auth_plugin: String,
}

impl Handshake {
    pub fn parse(p: &[u8]) -> Result<Self> {
        if p.first() == Some(&0xff) {
            return Err(server_error(p));
        }
        let mut c = Cursor { b: p };
        if c.u8()? != 10 {
            return Err(bad("not a protocol 10 handshake"));
        }
        let server_version = String::from_utf8_lossy(c.nul_str()).into_owned();
        let _thread = c.u32()?;
        let mut scramble = c.take(8)?.to_vec();
        c.take(1)?;
        let low = u32::from(c.u16()?);
        let _charset = c.u8()?;
        let _status = c.u16()?;
        let high = u32::from(c.u16()?);
        let capabilities = low | high << 16;
        let data_len = usize::from(c.u8()?);
        c.take(10)?;
        if capabilities & cap::SECURE_CONNECTION != 0 {
            // The rest of the scramble: max(13, data_len - 8) bytes, the last a NUL.
            let n = data_len.saturating_sub(8).max(13);
            let rest = c.take(n)?;
            scramble.extend_from_slice(rest.strip_suffix(&[0]).unwrap_or(rest));
        }
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(c.nul_str()).into_owned()
        } else {
            "mysql_native_password".into()
        };
        Ok(Handshake { server_version, capabilities, scramble, auth_plugin })
    }
}

/// An event's common header (19 bytes, v4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub size: u32,
    /// Where the next event starts in the server's file (0 for events the server makes up).
    pub log_pos: u32,
    pub flags: u16,
}

/// Event types this client needs to tell apart.
pub mod event {
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const HEARTBEAT: u8 = 27;
    /// Made up by the server for this connection, not in its file.
    pub const FLAG_ARTIFICIAL: u16 = 0x20;
}

impl EventHeader {
    pub const LEN: usize = 19;

    pub fn parse(e: &[u8]) -> Result<Self> {
        let mut c = Cursor { b: e };
        let h = EventHeader {
            timestamp: c.u32()?,
            type_code: c.u8()?,
            server_id: c.u32()?,
            size: c.u32()?,
            log_pos: c.u32()?,
            flags: c.u16()?,
        };
        if h.size as usize != e.len() {
            return Err(bad(format!("an event says it is {} bytes, its packet holds {}", h.size, e.len())));
        }
        Ok(h)
    }

    /// In the server's file (neither made up for this connection nor a heartbeat).
    pub fn in_file(&self) -> bool {
        self.type_code != event::HEARTBEAT && self.flags & event::FLAG_ARTIFICIAL == 0 && self.log_pos != 0
    }
}

/// TLS on a connection: the configuration (see `coffer_net::tls::db_client_config`) and the
/// name the server's certificate must hold.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: std::sync::Arc<coffer_net::tls::DbClientConfig>,
    pub host: String,
}

/// A connection to a server, authenticated.
pub struct Client {
    stream: BufReader<Stream>,
    seq: u8,
    handshake: Handshake,
    /// Why the connection was left in the middle of an answer, if it was.
    broken: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.handshake.server_version).finish_non_exhaustive()
    }
}

/// What this client says it speaks.
const CLIENT_CAPS: u32 = cap::LONG_PASSWORD
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | cap::MULTI_RESULTS
    | cap::PLUGIN_AUTH;

/// `COM_QUERY`, `COM_BINLOG_DUMP`.
const COM_QUERY: u8 = 0x03;
const COM_BINLOG_DUMP: u8 = 0x12;
/// Dump flags: end with an EOF packet at the end of the log instead of waiting; send MariaDB's
/// ANNOTATE_ROWS events (without it they are left out and files are not reassembled whole).
pub const DUMP_NON_BLOCK: u16 = 0x01;
pub const DUMP_SEND_ANNOTATE_ROWS: u16 = 0x02;

impl Client {
    /// Connects and authenticates (`mysql_native_password`), with `timeout` on every read and
    /// write.
    pub fn connect(target: &Target, user: &str, password: &[u8], timeout: Duration, tls: Option<&Tls>) -> Result<Self> {
        let stream = match target {
            Target::Tcp { host, port } => {
                // Each address in turn, each within the timeout: a link that drops packets fails
                // in seconds, not the kernel's two minutes.
                let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"));
                let mut connected = None;
                for addr in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            connected = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = connected.ok_or(last)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Target::Socket(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
        };
        let unknown =
            Handshake { server_version: String::new(), capabilities: 0, scramble: vec![], auth_plugin: String::new() };
        let mut client = Client { stream: BufReader::new(stream), seq: 0, handshake: unknown, broken: None };
        let p = client.read_packet()?;
        client.handshake = Handshake::parse(&p)?;
        if client.handshake.capabilities & cap::PROTOCOL_41 == 0 {
            return Err(bad("the server does not speak protocol 4.1"));
        }
        let mut caps = CLIENT_CAPS;
        if let Some(tls) = tls {
            client = client.start_tls(tls)?;
            caps |= cap::SSL;
        }
        client.authenticate(user, password, caps)?;
        Ok(client)
    }

    /// Asks for TLS (the protocol's SSL request: our capabilities, nothing else), then
    /// completes the TLS handshake on the socket.
    fn start_tls(mut self, tls: &Tls) -> Result<Self> {
        if self.handshake.capabilities & cap::SSL == 0 {
            return Err(ClientError::Tls("the server does not offer TLS".into()));
        }
        let mut p = Vec::with_capacity(32);
        p.extend_from_slice(&(CLIENT_CAPS | cap::SSL).to_le_bytes());
        p.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        self.write_packet(&p)?;
        if !self.stream.buffer().is_empty() {
            return Err(bad("the server spoke before TLS began"));
        }
        let Stream::Tcp(tcp) = self.stream.into_inner() else {
            return Err(ClientError::Tls("TLS is for TCP connections, not sockets".into()));
        };
        let stream = coffer_net::tls::upgrade(tcp, tls.config.clone(), &tls.host)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.stream = BufReader::new(Stream::Tls(Box::new(stream)));
        Ok(self)
    }

    /// The server's version string, from its handshake.
    pub fn server_version(&self) -> &str {
        &self.handshake.server_version
    }

    fn authenticate(&mut self, user: &str, password: &[u8], caps: u32) -> Result<()> {
        let plugin = self.handshake.auth_plugin.clone();
        let answer = match plugin.as_str() {
            "mysql_native_password" => native_password(password, &self.handshake.scramble),
            // Answered after the switch the server then asks for.
            _ => Vec::new(),
        };
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
        p.push(45); // utf8mb4_general_ci
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(answer.len() as u8);
        p.extend_from_slice(&answer);
        p.extend_from_slice(b"mysql_native_password\0");
        self.write_packet(&p)?;
        loop {
            let r = self.read_packet()?;
            match r.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(server_error(&r)),
                // Auth switch: the method's name, then its scramble.
                Some(0xfe) => {
                    let mut c = Cursor { b: &r[1..] };
                    let method = String::from_utf8_lossy(c.nul_str()).into_owned();
                    if method != "mysql_native_password" {
                        return Err(ClientError::AuthMethod(method));
                    }
                    let scramble = c.b.strip_suffix(&[0]).unwrap_or(c.b);
                    let answer = native_password(password, scramble);
                    self.write_packet(&answer)?;
                }
                _ => return Err(bad("an unexpected packet during authentication")),
            }
        }
    }

    /// Reads one packet of the handshake or authentication.
    fn read_packet(&mut self) -> Result<Vec<u8>> {
        let over =
            || ClientError::TooLarge { limit: size_text(HANDSHAKE_PACKET), what: "a packet of the handshake".into() };
        read_packet_from(&mut self.stream, &mut self.seq, HANDSHAKE_PACKET, over)
    }

    /// `r`, noting an error that leaves the connection in the middle of an answer (any but
    /// the server's own, which ends its answer): nothing read after it could be told apart.
    fn noted<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if !matches!(e, ClientError::Server { .. }) {
                self.broken.get_or_insert_with(|| e.to_string());
            }
        }
        r
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(ClientError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Writes one packet, in pieces of at most 16 MiB - 1 (a piece shorter than that, empty if
    /// need be, ends it).
    fn write_packet(&mut self, payload: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        let mut rest = payload;
        loop {
            let (piece, tail) = rest.split_at(rest.len().min(0xff_ffff));
            let len = piece.len() as u32;
            stream.write_all(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq])?;
            stream.write_all(piece)?;
            self.seq = self.seq.wrapping_add(1);
            rest = tail;
            if piece.len() < 0xff_ffff {
                break;
            }
        }
        stream.flush()?;
        Ok(())
    }

    fn command(&mut self, code: u8, body: &[u8]) -> Result<()> {
        self.seq = 0;
        let mut p = Vec::with_capacity(1 + body.len());
        p.push(code);
        p.extend_from_slice(body);
        self.write_packet(&p)
    }

    /// Runs `sql`; its rows (text protocol), each column a string or NULL, at most
    /// [`ResultCap::DEFAULT`]. Statements without a result give no rows.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Row>> {
        self.query_capped(sql, ResultCap::DEFAULT)
    }

    /// [`Client::query`] with a cap of its own (a query that returns a row or a few:
    /// [`ResultCap::FEW`]). A result beyond it is refused, and so is any later use of this
    /// connection (the rest of that result is still on its way).
    pub fn query_capped(&mut self, sql: &str, cap: ResultCap) -> Result<Vec<Row>> {
        self.usable()?;
        let r = self
            .command(COM_QUERY, sql.as_bytes())
            .and_then(|()| read_result(&mut self.stream, &mut self.seq, &query_kind(sql), cap));
        self.noted(r)
    }

    /// Asks for the binary log from `file` at `position`, as replica `server_id`; read the
    /// events with [`Client::next_event`]. The session is first told what a replica that
    /// understands checksums and MariaDB's GTID events says; `heartbeat` keeps an idle stream
    /// speaking.
    pub fn dump(&mut self, file: &str, position: u32, server_id: u32, flags: u16, heartbeat: Duration) -> Result<()> {
        if !crate::meta::is_binlog_file_name(file) {
            return Err(bad(format!("{file:?} is not a binary log file name")));
        }
        self.start_dump(file, position, server_id, flags, heartbeat)
    }

    /// Asks for the binary log after MariaDB's GTID position `state` (empty: from the oldest
    /// log the server has), as a replica with `MASTER_USE_GTID` does: the position in
    /// `@slave_connect_state`, then the dump with no file name at 4. The server finds the file
    /// itself (from the GTID_LIST at the start of each log), skips what `state` has applied,
    /// and answers ERROR 1236 when no log holds it. Strict mode and ignoring duplicates are off
    /// unless their session variables are set, which this never does.
    pub fn dump_gtid(&mut self, state: &str, server_id: u32, flags: u16, heartbeat: Duration) -> Result<()> {
        self.query_capped(&connect_state_sql(state)?, ResultCap::FEW)?;
        self.start_dump("", 4, server_id, flags, heartbeat)
    }

    fn start_dump(&mut self, file: &str, position: u32, server_id: u32, flags: u16, heartbeat: Duration) -> Result<()> {
        self.query_capped("SET @master_binlog_checksum = @@global.binlog_checksum", ResultCap::FEW)?;
        self.query_capped("SET @mariadb_slave_capability = 4", ResultCap::FEW)?;
        self.query_capped(&format!("SET @master_heartbeat_period = {}", heartbeat.as_nanos()), ResultCap::FEW)?;
        let r = self.command(COM_BINLOG_DUMP, &dump_body(file, position, server_id, flags));
        self.noted(r)
    }

    /// The next event of a dump, its bytes as the server's file holds them (header, body,
    /// checksum); `None` when the server ends the stream (a non-blocking dump at the end of
    /// its log, or a server shutting down).
    pub fn next_event(&mut self) -> Result<Option<(EventHeader, Vec<u8>)>> {
        self.usable()?;
        let r = self.read_event();
        self.noted(r)
    }

    fn read_event(&mut self) -> Result<Option<(EventHeader, Vec<u8>)>> {
        // The OK byte before the event, and the event of at most MAX_PACKET.
        let over = || ClientError::TooLarge { limit: size_text(MAX_PACKET), what: "a binary log event".into() };
        let mut p = read_packet_from(&mut self.stream, &mut self.seq, MAX_PACKET + 1, over)?;
        match p.first() {
            Some(0x00) => {
                p.remove(0);
                let h = EventHeader::parse(&p)?;
                Ok(Some((h, p)))
            }
            Some(0xfe) if p.len() < 9 => Ok(None),
            Some(0xff) => Err(server_error(&p)),
            _ => Err(bad("an unexpected packet in a binary log dump")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_known_answer() {
        // Computed independently with Python's hashlib for scramble 01..14 and password
        // "secret": sha1(pw) XOR sha1(scramble + sha1(sha1(pw))).
        let scramble: Vec<u8> = (1..=20).collect();
        let got = native_password(b"secret", &scramble);
        assert_eq!(coffer_crypto::hex(&got), NATIVE_KAT);
        assert!(native_password(b"", &scramble).is_empty());
    }

    const NATIVE_KAT: &str = "b32bb3a583e1340c0a1108d58b1be49781ad8c2f";

    #[test]
    fn handshakes_parse_and_nonsense_does_not_panic() {
        // A MariaDB 10.11 handshake, as captured (scramble replaced).
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.19-MariaDB-0+deb12u1-log\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        let caps: u32 = 0xf7fe | (0x81bf << 16) | cap::PLUGIN_AUTH | cap::SECURE_CONNECTION;
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let h = Handshake::parse(&p).unwrap();
        assert_eq!(h.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1-log");
        assert_eq!(h.scramble, b"abcdefghijklmnopqrst");
        assert_eq!(h.auth_plugin, "mysql_native_password");
        for cut in 0..p.len() {
            let _ = Handshake::parse(&p[..cut]);
        }
        assert!(matches!(
            Handshake::parse(b"\xff\x15\x04#28000Access denied"),
            Err(ClientError::Server { code: 1045, .. })
        ));
    }

    #[test]
    fn event_headers() {
        let mut e = vec![0u8; 19];
        e[4] = event::ROTATE;
        e[9..13].copy_from_slice(&19u32.to_le_bytes());
        e[13..17].copy_from_slice(&0u32.to_le_bytes());
        e[17..19].copy_from_slice(&event::FLAG_ARTIFICIAL.to_le_bytes());
        let h = EventHeader::parse(&e).unwrap();
        assert_eq!((h.type_code, h.size), (event::ROTATE, 19));
        assert!(!h.in_file(), "a fake rotate");
        e[9..13].copy_from_slice(&20u32.to_le_bytes());
        assert!(EventHeader::parse(&e).is_err(), "a size that is not the packet's");
        assert!(EventHeader::parse(&e[..10]).is_err());
    }

    /// `payloads` as packets, numbered from `seq`.
    fn framed(seq: u8, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
            out.push(seq.wrapping_add(i as u8));
            out.extend_from_slice(p);
        }
        out
    }

    /// A result's packets up to its rows: the column count, `columns` definitions, the EOF.
    fn result_head(columns: usize) -> Vec<Vec<u8>> {
        let mut head = vec![vec![0xfc, columns as u8, (columns >> 8) as u8]];
        head.extend((0..columns).map(|_| b"\x03def\0\0\0\x01c\0\x0c\x2d\0\0\0\0\0\xfd\0\0\0\0\0".to_vec()));
        head.push(vec![0xfe, 0, 0, 2, 0]);
        head
    }

    fn read(bytes: &[u8], cap: ResultCap) -> Result<Vec<Row>> {
        read_result(&mut &bytes[..], &mut 0, "SELECT x", cap)
    }

    #[test]
    fn results_are_read_within_their_caps() {
        let mut packets = result_head(2);
        packets.push(b"\x03abc\xfb".to_vec());
        packets.push(b"\x01x\x02\xff\xfe".to_vec());
        packets.push(vec![0xfe, 0, 0, 2, 0]);
        let rows = read(&framed(1, &packets), ResultCap::FEW).unwrap();
        assert_eq!(rows, [vec![Some("abc".into()), None], vec![Some("x".into()), Some("\u{fffd}\u{fffd}".into())]]);
        assert_eq!(read(&framed(1, &[vec![0, 0, 0, 2, 0]]), ResultCap::FEW).unwrap(), Vec::<Row>::new());
        let err = read(&framed(1, &[b"\xff\x7a\x04#42000no".to_vec()]), ResultCap::FEW).unwrap_err();
        assert!(matches!(err, ClientError::Server { code: 1146, .. }), "{err}");

        // One row too many, by count and by size.
        let mut packets = result_head(1);
        packets.extend((0..101).map(|_| b"\x01r".to_vec()));
        let err = read(&framed(1, &packets), ResultCap::FEW).unwrap_err();
        assert_eq!(err.to_string(), "the server sent more than 100 rows for SELECT x; refusing");
        let cap = ResultCap { rows: 1000, bytes: 4096 };
        let err = read(&framed(1, &packets), cap).unwrap_err();
        assert_eq!(err.to_string(), "the server sent more than 4 KiB for SELECT x; refusing");

        // A row with bytes after its last column.
        let mut packets = result_head(1);
        packets.push(b"\x01rjunk".to_vec());
        assert!(matches!(read(&framed(1, &packets), ResultCap::FEW), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn nulls_and_columns_cannot_inflate_a_result() {
        // 4096 NULLs a row: 4 KiB on the wire, 96 KiB as cells; refused by what they become.
        let mut packets = result_head(4096);
        packets.extend((0..40).map(|_| vec![0xfb; 4096]));
        let wire = framed(1, &packets);
        let cap = ResultCap { rows: 1000, bytes: 1 << 20 };
        let err = read(&wire, cap).unwrap_err();
        assert_eq!(err.to_string(), "the server sent more than 1 MiB for SELECT x; refusing");
        assert!(wire.len() < cap.bytes, "refused within fewer bytes than the cap");

        // More columns than a server ever sends: refused before any definition is read.
        for count in [&b"\xfc\x01\x10"[..], b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff"] {
            let err = read(&framed(1, &[count.to_vec()]), ResultCap::DEFAULT).unwrap_err();
            assert_eq!(err.to_string(), "the server sent more than 4096 columns for SELECT x; refusing");
        }
        assert!(matches!(read(&framed(1, &[vec![0xfb]]), ResultCap::FEW), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn packets_are_joined_and_bounded_before_they_are_read() {
        // A packet of a 16 MiB - 1 piece and the piece that ends it.
        let mut wire = framed(3, &[vec![7; 0xff_ffff], vec![8; 10]]);
        let p = read_packet_from(&mut &wire[..], &mut 0, MAX_PACKET, || bad("over")).unwrap();
        assert_eq!((p.len(), p[0], p[p.len() - 1]), (0xff_ffff + 10, 7, 8));
        // Beyond the limit: refused at the header that claims it, nothing after it read.
        let mut seq = 0;
        let mut r = &wire[..];
        let err = read_packet_from(&mut r, &mut seq, 0xff_ffff + 9, || bad("over")).unwrap_err();
        assert_eq!(err.to_string(), "protocol error: over");
        assert_eq!((wire.len() - r.len(), seq), (4 + 0xff_ffff + 4, 5));
        // A piece cut short is an end of stream, not a packet.
        wire.truncate(100);
        let err = read_packet_from(&mut &wire[..], &mut 0, MAX_PACKET, || bad("over")).unwrap_err();
        assert!(matches!(&err, ClientError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{err}");
    }

    #[test]
    fn gtid_dumps_start_from_a_checked_state() {
        assert_eq!(connect_state_sql("0-1-5,7-2-9").unwrap(), "SET @slave_connect_state = '0-1-5,7-2-9'");
        assert_eq!(connect_state_sql("").unwrap(), "SET @slave_connect_state = ''");
        for bad_state in ["0-1-5'; DROP TABLE t; --", "0-1", "0-1-5,0-2-6", "x", "0-1-5\n"] {
            let err = connect_state_sql(bad_state).unwrap_err();
            assert!(matches!(&err, ClientError::Protocol(m) if m.contains("not a MariaDB GTID position")), "{err}");
        }
        // A GTID dump: no file name, position 4.
        let body = dump_body("", 4, 0xfffe_0001, DUMP_NON_BLOCK);
        assert_eq!(body, [4, 0, 0, 0, 1, 0, 1, 0, 0xfe, 0xff]);
        assert_eq!(&dump_body("b.000001", 256, 7, 0)[10..], b"b.000001");
    }

    #[test]
    fn errors_name_the_query_on_one_line() {
        assert_eq!(query_kind("SHOW  BINARY\nLOGS"), "SHOW BINARY LOGS");
        let long = query_kind("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE 1");
        assert_eq!(long, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information...");
        assert_eq!(
            (size_text(128 << 20), size_text(64 << 10), size_text(1000)),
            ("128 MiB".into(), "64 KiB".into(), "1000 bytes".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_parsed_without_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Handshake::parse(&b);
            let _ = EventHeader::parse(&b);
            let _ = server_error(&b);
            let mut c = Cursor { b: &b };
            while let Ok(Some(_)) = c.lenenc_bytes() {}
        }
    }
}
