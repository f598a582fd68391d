//! IRC line handling: any bytes from a server, in any chunking, go through framing,
//! decoding, parsing and a connection's session without a panic; framing never yields a
//! line longer than IRC allows, and the read buffer stays bounded.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use flotilla_irc::line::{Framed, LineBuffer, MAX_LINE, MAX_TAGS, decode, parse_line};
use flotilla_irc::plan::ChannelSpec;
use flotilla_irc::session::{Session, SessionConfig};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let config = Arc::new(SessionConfig {
        nick: "flot".into(),
        user: "flot".into(),
        realname: "Flotilla".into(),
        password: Some("pw".into()),
        ping_interval: Duration::from_secs(30),
        max_lag: Duration::from_secs(60),
        rejoin_delay: Duration::from_secs(10),
        max_backoff: Duration::from_secs(300),
        // Trusted services, so NickServ's lines reach the code that believes them.
        services_host: Some("services.example".into()),
    });
    let channels = [ChannelSpec { name: "#a".into(), key: None }, ChannelSpec { name: "#b".into(), key: Some("k".into()) }];
    let mut session = Session::new(config, &channels);
    let start = Instant::now();
    let _ = session.start(start);
    let mut buffer = LineBuffer::new();
    let mut lines = Vec::new();
    for (i, piece) in data.chunks(chunk).enumerate() {
        buffer.buffer().extend_from_slice(piece);
        buffer.drain(|framed| match framed {
            Framed::Line(line) => {
                assert!(line.len() <= MAX_LINE + MAX_TAGS, "a line of {} bytes got through", line.len());
                lines.push(line.to_vec());
            }
            Framed::TooLong { length } => assert!(length > MAX_LINE),
        });
        assert!(buffer.capacity() <= 2 * (MAX_LINE + MAX_TAGS) + 1024, "buffer grew to {}", buffer.capacity());
        let now = start + Duration::from_millis(i as u64 * 700);
        for line in lines.drain(..) {
            let (text, _) = decode(&line);
            if let Ok(parsed) = parse_line(&text) {
                assert!(!parsed.command.is_empty() && parsed.params.len() <= 15);
                let _ = session.handle(&parsed, now);
                let _ = flotilla_irc::record::line_row(&parsed, "net", 0);
                let _ = flotilla_irc::record::line_message(&parsed, "net", session.nick(), 0, false);
            }
        }
        let _ = session.tick(now);
        let _ = session.next_deadline();
    }
    let _ = session.disconnected("fuzz");
});
