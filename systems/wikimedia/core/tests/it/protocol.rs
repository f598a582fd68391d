//! The control protocol, driven through `Session::feed_line` with transcripts: each test
//! is the whole conversation as a client sees it.
//!
//! Transcript lines: `> line` is sent by session 1 (`>2 line` by session 2), `< line` is a
//! reply to session 1 (`<2` to session 2), `! …` is a state change returned for the
//! store, `< (closed)` means the session told the server to close. `$T1`, `$T2`, … stand
//! for the tokens handed out, in order. `> @long N` sends a line of N `x`; `> @hex ..`
//! sends raw bytes. Lines starting with `#` are comments.

use flotilla_wikimedia_core::protocol::frame::{Frame, next_line};
use flotilla_wikimedia_core::subscription::Mutation;
use flotilla_wikimedia_core::token::{Token, TokenError, TokenHash, TokenSource};
use flotilla_wikimedia_core::{Limits, Session, SessionLimits, SubscribeAccess, SubscribePolicy, Subscriptions, Wikis};

/// Hands out `$T1`, `$T2`, … in order.
struct SequenceTokens(u8);

fn token_text(n: u8) -> String {
    format!("QWERTYUIOPASDFGHJKLZXCVBNMQWERTYUIOPASD{}", char::from(b'A' + n))
}

impl TokenSource for SequenceTokens {
    fn new_token(&mut self) -> Result<Token, TokenError> {
        self.0 += 1;
        Token::parse(&token_text(self.0)).ok_or_else(|| TokenError("test tokens ran out".into()))
    }
}

/// A source that always fails, as a broken OS random source would.
struct NoTokens;

impl TokenSource for NoTokens {
    fn new_token(&mut self) -> Result<Token, TokenError> {
        Err(TokenError("no entropy".into()))
    }
}

fn placeholders(mut text: String) -> String {
    for n in 1..=9 {
        text = text.replace(&token_text(n), &format!("$T{n}"));
    }
    text
}

fn tokens_in(mut text: String) -> String {
    for n in (1..=9).rev() {
        text = text.replace(&format!("$T{n}"), &token_text(n));
    }
    text
}

fn describe(mutation: &Mutation) -> String {
    let names = |definitions: &[flotilla_wikimedia_core::Definition]| {
        let mut text = String::new();
        for d in definitions {
            let f = d.fields();
            text.push_str(&format!(
                " [{} page={:?} page_rx={:?} user={:?} user_rx={:?} flags={}]",
                f.wiki,
                f.page,
                f.page_rx,
                f.user,
                f.user_rx,
                f.flags.join(",")
            ));
        }
        text
    };
    match mutation {
        Mutation::Created { name, token_hash, format } => {
            assert_eq!(token_hash.to_hex().len(), 64);
            format!("created {name} {}", format.name())
        }
        Mutation::Deleted { name } => format!("deleted {name}"),
        Mutation::FormatSet { name, format } => format!("format {name} {}", format.name()),
        Mutation::DefinitionsAdded { name, definitions } => {
            format!("added {name}{}", names(definitions))
        }
        Mutation::DefinitionsRemoved { name, definitions } => {
            format!("removed {name}{}", names(definitions))
        }
    }
}

/// Runs a transcript against fresh state and compares the whole conversation.
#[track_caller]
fn check_with(script: &str, state: Subscriptions, limits: SessionLimits) {
    check_sessions(script, state, [Session::new(limits), Session::new(limits)]);
}

/// Runs a transcript with the given sessions.
#[track_caller]
fn check_sessions(script: &str, mut state: Subscriptions, mut sessions: [Session; 2]) {
    state.connection_opened();
    state.connection_opened();
    let mut expected = String::new();
    let mut actual = String::new();
    for line in script.lines().map(str::trim_start) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        expected.push_str(line);
        expected.push('\n');
        let (session, sent) = if let Some(sent) = line.strip_prefix("> ") {
            (0, sent)
        } else if let Some(sent) = line.strip_prefix(">2 ") {
            (1, sent)
        } else if line == ">" {
            (0, "")
        } else {
            continue;
        };
        actual.push_str(line);
        actual.push('\n');
        let bytes = if let Some(count) = sent.strip_prefix("@long ") {
            vec![b'x'; count.parse().expect("@long N")]
        } else if let Some(hex) = sent.strip_prefix("@hex ") {
            hex.split_whitespace().map(|h| u8::from_str_radix(h, 16).expect("@hex bytes")).collect()
        } else {
            tokens_in(sent.to_string()).into_bytes()
        };
        let out = sessions[session].feed_line(&bytes, &mut state);
        for mutation in &out.mutations {
            actual.push_str(&format!("! {}\n", describe(mutation)));
        }
        let marker = if session == 0 { "<" } else { "<2" };
        for reply in &out.replies {
            let encoded = reply.encode();
            assert_eq!(encoded.last(), Some(&b'\n'));
            assert_eq!(encoded.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
            let text = String::from_utf8(encoded).expect("replies are UTF-8");
            actual.push_str(&format!("{marker} {}\n", placeholders(text.trim_end().into())));
        }
        if out.close {
            actual.push_str(&format!("{marker} (closed)\n"));
        }
    }
    assert_eq!(actual, expected);
}

#[track_caller]
fn check(script: &str) {
    let state = Subscriptions::new(Wikis::embedded()).with_token_source(SequenceTokens(0));
    check_with(script, state, SessionLimits::default());
}

#[test]
fn subscribe_and_names() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > subscribe alpha
        < E002: This subscription exist
        > SUBSCRIBE beta.-_9
        ! created beta.-_9 pipe
        < TOKEN: $T2
        > subscribe
        < E001: Invalid name
        > subscribe bad!name
        < E001: Invalid name
        > subscribe three words here
        < E001: Invalid name
        # A second word is an admin token: checked, and refused if wrong.
        > subscribe two words
        < E005: Invalid token or name
        > subscribe ümlaut
        < E001: Invalid name
        > subscribe aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        < E001: Invalid name
        > subscribe aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        ! created aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa pipe
        < TOKEN: $T3
        > info
        < I have 2 connections and 3 subscriptions, I am now watching 0 wikis
        "#,
    );
}

/// `dispatcher.subscribe`: who may create subscriptions. Session 1 gives no admin
/// token, session 2 gives one.
#[test]
fn subscribing_follows_the_policy_and_checks_any_admin_token_given() {
    const ADMIN: &str = "the-admin-token-of-this-node-32-bytes";
    #[track_caller]
    fn check_policy(policy: SubscribePolicy, admin_token: Option<&str>, script: &str) {
        let access = SubscribeAccess { policy, admin_token: admin_token.map(TokenHash::of) };
        let state = Subscriptions::new(Wikis::embedded()).with_token_source(SequenceTokens(0));
        let session = || Session::new(SessionLimits::default()).with_access(access.clone());
        check_sessions(&script.replace("$ADMIN", ADMIN), state, [session(), session()]);
    }
    check_policy(
        SubscribePolicy::Open,
        Some(ADMIN),
        r#"
        > subscribe anyone
        ! created anyone pipe
        < TOKEN: $T1
        >2 subscribe admins $ADMIN
        ! created admins pipe
        <2 TOKEN: $T2
        >2 subscribe guess not-the-token
        <2 E005: Invalid token or name
        "#,
    );
    check_policy(
        SubscribePolicy::Admin,
        Some(ADMIN),
        r#"
        > subscribe anyone
        < E022: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN
        > subscribe anyone not-the-token
        < E005: Invalid token or name
        >2 subscribe admins $ADMIN
        ! created admins pipe
        <2 TOKEN: $T1
        # The rest of the protocol is the subscription's token's, as before.
        > auth admins $T1
        < OK
        > info
        < I have 2 connections and 1 subscriptions, I am now watching 0 wikis
        "#,
    );
    // `admin` without an admin token configured: no one can subscribe.
    check_policy(
        SubscribePolicy::Admin,
        None,
        r#"
        > subscribe anyone
        < E022: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN
        >2 subscribe admins $ADMIN
        <2 E005: Invalid token or name
        "#,
    );
    check_policy(
        SubscribePolicy::Closed,
        Some(ADMIN),
        r#"
        > subscribe anyone
        < E023: Subscribing is closed
        >2 subscribe admins $ADMIN
        <2 E023: Subscribing is closed
        "#,
    );
}

#[test]
fn failing_token_source_is_reported() {
    let state = Subscriptions::new(Wikis::embedded()).with_token_source(NoTokens);
    check_with(
        "> subscribe alpha\n< E019: Could not create a token\n> info\n< I have 2 connections and 0 subscriptions, I am now watching 0 wikis\n",
        state,
        SessionLimits::default(),
    );
}

#[test]
fn auth_and_commands_that_need_it() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        # Everything that acts on a subscription needs auth first, even with bad arguments.
        > insert
        < E020: Authentication was not completed
        # The document after `insert`/`remove` belongs to its command whatever the reply
        # (SPEC §6.2): it is read to its end, then the one reply is E020.
        > insert xml
        > <items>
        >   <item page="Main Page">enwiki</item>
        > </items>
        < E020: Authentication was not completed
        > insert json [{"wiki": "enwiki"},
        >   {"wiki": "dewiki"}]
        < E020: Authentication was not completed
        > remove xml <items/>
        < E020: Authentication was not completed
        # As after auth, a line that cannot start the document ends it.
        > insert xml
        > info
        < E020: Authentication was not completed
        > remove yaml
        < E020: Authentication was not completed
        > list
        < E020: Authentication was not completed
        > format xml
        < E020: Authentication was not completed
        > format
        < E020: Authentication was not completed
        > unsubscribe
        < E005: Invalid token or name
        > auth alpha
        < E005: Invalid token or name
        > auth alpha $T1 extra
        < E005: Invalid token or name
        > auth alpha QWERTYUIOPASDFGHJKLZXCVBNMQWERTYUIOPASDZ
        < E005: Invalid token or name
        > auth nobody $T1
        < E005: Invalid token or name
        > Auth alpha $T1
        < OK
        > insert
        < E008: Missing parameter for insert
        > remove
        < E008: Missing parameter for delete
        > insert yaml
        < E010: Unknown format of data
        > remove csv <items/>
        < E010: Unknown format of data
        > list yaml
        < E010: Unknown format of data
        > list xml json
        < E010: Unknown format of data
        > format yaml
        < E012: Invalid format
        > format
        < E012: Invalid format
        > format xml json
        < E012: Invalid format
        > format XML
        ! format alpha xml
        < OK
        > format json
        ! format alpha json
        < OK
        # A failed auth ends the previous one.
        > auth alpha wrong
        < E005: Invalid token or name
        > list
        < E020: Authentication was not completed
        "#,
    );
}

#[test]
fn insert_list_remove_in_both_forms() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        > insert xml
        > <items>
        >   <item page="Main Page">en_wikipedia</item>
        >   <item user_rx="^Bot" flags="bot, minor">de.wikipedia.org</item>
        >   <item page="Main Page">enwiki</item>
        > </items>
        ! added alpha [enwiki page=Some("Main Page") page_rx=None user=None user_rx=None flags=] [dewiki page=None page_rx=None user=None user_rx=Some("^Bot") flags=bot,minor]
        < 2
        > insert json [{"wiki": "en.wikipedia.org", "page": "Main Page"}, {"wiki": "kowiki", "user": "廢后", "page_rx": "^사용자:", "flags": ["nobot"]}]
        ! added alpha [kowiki page=None page_rx=Some("^사용자:") user=Some("廢后") user_rx=None flags=nobot]
        < 1
        > insert json
        > [
        >   {"wiki": "commonswiki"},
        >   {"wiki": "frwiki", "page": "a \"]\" title", "page_rx": null, "flags": []}
        > ]
        ! added alpha [commonswiki page=None page_rx=None user=None user_rx=None flags=] [frwiki page=Some("a \"]\" title") page_rx=None user=None user_rx=None flags=]
        < 2
        > insert xml <items><item page="Main Page">enwiki</item></items>
        < 0
        > list
        < [{"wiki":"commonswiki"},{"wiki":"dewiki","user_rx":"^Bot","flags":["bot","minor"]},{"wiki":"enwiki","page":"Main Page"},{"wiki":"frwiki","page":"a \"]\" title"},{"wiki":"kowiki","page_rx":"^사용자:","user":"廢后","flags":["nobot"]}]
        > list xml
        < <items><item>commonswiki</item><item user_rx="^Bot" flags="bot,minor">dewiki</item><item page="Main Page">enwiki</item><item page="a &quot;]&quot; title">frwiki</item><item page_rx="^사용자:" user="廢后" flags="nobot">kowiki</item></items>
        > info
        < I have 2 connections and 1 subscriptions, I am now watching 5 wikis
        > remove xml <items><item page="Main Page">en.wikipedia.org</item><item page="Nope">enwiki</item></items>
        ! removed alpha [enwiki page=Some("Main Page") page_rx=None user=None user_rx=None flags=]
        < 1
        > remove json [{"wiki":"commonswiki"},{"wiki":"dewiki","user_rx":"^Bot","flags":["bot","minor"]}]
        ! removed alpha [commonswiki page=None page_rx=None user=None user_rx=None flags=] [dewiki page=None page_rx=None user=None user_rx=Some("^Bot") flags=bot,minor]
        < 2
        > remove json []
        < 0
        > list json
        < [{"wiki":"frwiki","page":"a \"]\" title"},{"wiki":"kowiki","page_rx":"^사용자:","user":"廢后","flags":["nobot"]}]
        > info
        < I have 2 connections and 1 subscriptions, I am now watching 2 wikis
        "#,
    );
}

#[test]
fn document_errors_add_nothing() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        > insert xml <items><item page="A">enwiki</item><item>nowikihere</item></items>
        < E014: Unknown wiki: nowikihere
        > insert json [{"wiki": "enwiki", "page": "A"}, {"wiki": "en.wikipedia.com"}]
        < E014: Unknown wiki: en.wikipedia.com
        > insert json [{"wiki": "bad\nwiki"}]
        < E014: Unknown wiki: bad\nwiki
        > insert xml <items><item page_rx="(abc">enwiki</item></items>
        < E011: Invalid regex: "(abc": unclosed group
        > insert json [{"wiki": "enwiki", "user_rx": "a{2,1}"}]
        < E011: Invalid regex: "a{2,1}": invalid repetition count range, the start must be <= the end
        > insert xml <items><item flags="bot,sometimes">enwiki</item></items>
        < E017: Unknown flag: sometimes
        > insert json [{"wiki": "enwiki", "flags": ["LOG", "often"]}]
        < E017: Unknown flag: often
        > insert xml <items><item page="A"></item></items>
        < E018: Missing wiki
        > insert xml <items><item page="A"/></items>
        < E018: Missing wiki
        > insert json [{"page": "A"}]
        < E018: Missing wiki
        > insert xml <items><item>enwiki</items>
        < E060: Invalid xml
        > insert xml <items><item pagerx="A">enwiki</item></items>
        < E060: Invalid xml
        > insert xml <items><item><b>enwiki</b></item></items>
        < E060: Invalid xml
        > insert xml <items>text</items>
        < E060: Invalid xml
        > insert xml <list><item>enwiki</item></items>
        < E060: Invalid xml
        > insert xml <items><item>enwiki</item></items><items></items>
        < E060: Invalid xml
        > insert json {"wiki": "enwiki"}
        < E062: Invalid json
        > insert json [{"wiki": "enwiki", "pagerx": "A"}]
        < E062: Invalid json
        > insert json [{"wiki": "enwiki"}] trailing
        < E062: Invalid json
        > insert json 42
        < E062: Invalid json
        > insert json [{"wiki": "enwiki"
        > }}
        < E062: Invalid json
        > list
        < []
        "#,
    );
}

#[test]
fn documents_that_never_start_do_not_swallow_commands() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        # Blank lines before the document are fine; a line that cannot start one is not.
        > insert xml
        >
        > list
        < E060: Invalid xml
        > list
        < []
        > insert json
        > ["unterminated string
        < E062: Invalid json
        > list xml
        < <items></items>
        "#,
    );
}

#[test]
fn empty_documents() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        > insert xml <items/>
        < 0
        > insert xml
        > <?xml version="1.0"?>
        > <items>
        > <!-- nothing yet -->
        > </items>
        < 0
        > insert json []
        < 0
        "#,
    );
}

#[test]
fn caps_on_definitions_and_documents() {
    let state = Subscriptions::new(Wikis::embedded())
        .with_token_source(SequenceTokens(0))
        .with_limits(Limits { max_definitions: 2, ..Limits::default() });
    let limits = SessionLimits { max_line_bytes: 200, max_document_bytes: 100 };
    check_with(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        > insert json [{"wiki":"enwiki","page":"A"},{"wiki":"enwiki","page":"B"},{"wiki":"enwiki","page":"C"}]
        < E015: Too many definitions (at most 2 per subscription)
        > list
        < []
        # Duplicates do not count against the cap.
        > insert json [{"wiki":"enwiki","page":"A"},{"wiki":"enwiki","page":"A"}]
        ! added alpha [enwiki page=Some("A") page_rx=None user=None user_rx=None flags=]
        < 1
        > insert json [{"wiki":"enwiki","page":"A"},{"wiki":"enwiki","page":"B"}]
        ! added alpha [enwiki page=Some("B") page_rx=None user=None user_rx=None flags=]
        < 1
        > insert json [{"wiki":"enwiki","page":"C"}]
        < E015: Too many definitions (at most 2 per subscription)
        # A document over the size limit is read to its end, then refused.
        > remove xml
        > <items>
        > <item page="A">enwiki</item>
        > <item page="B">enwiki</item>
        > <item page="C">enwiki</item>
        > <item page="D">enwiki</item>
        > </items>
        < E016: Document too large (at most 100 bytes)
        > list xml
        < <items><item page="A">enwiki</item><item page="B">enwiki</item></items>
        > @long 200
        < E006: Command not understood
        > @long 201
        < E013: Line too long
        < (closed)
        > info
        "#,
        state,
        limits,
    );
}

#[test]
fn line_handling() {
    check(
        r#"
        > info
        < I have 2 connections and 0 subscriptions, I am now watching 0 wikis
        > INFO
        < I have 2 connections and 0 subscriptions, I am now watching 0 wikis
        > @hex 69 6e 66 6f 0d
        < I have 2 connections and 0 subscriptions, I am now watching 0 wikis
        > @hex 69 6e 66 6f 0d 0a
        < I have 2 connections and 0 subscriptions, I am now watching 0 wikis
        >
        >    	
        > info please
        < E006: Command not understood
        > hello
        < E006: Command not understood
        > @hex ff fe 69 6e 66 6f
        < E006: Command not understood
        > @long 65536
        < E006: Command not understood
        > quit now
        < E006: Command not understood
        > Quit
        < Good bye :o
        < (closed)
        > info
        >2 @long 65537
        <2 E013: Line too long
        <2 (closed)
        "#,
    );
}

#[test]
fn unsubscribe_forms() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > subscribe beta
        ! created beta pipe
        < TOKEN: $T2
        > unsubscribe gamma $T1
        < E007: No such feed
        > unsubscribe alpha $T2
        < E005: Invalid token or name
        > unsubscribe alpha
        < E005: Invalid token or name
        > auth alpha $T1
        < OK
        > insert xml <items><item>enwiki</item></items>
        ! added alpha [enwiki page=None page_rx=None user=None user_rx=None flags=]
        < 1
        # One word is not "the authenticated one": the original deleted alpha here.
        > unsubscribe beta
        < E005: Invalid token or name
        > unsubscribe beta $T2
        ! deleted beta
        < OK
        > info
        < I have 2 connections and 1 subscriptions, I am now watching 1 wikis
        > unsubscribe
        ! deleted alpha
        < OK
        > list
        < E020: Authentication was not completed
        > info
        < I have 2 connections and 0 subscriptions, I am now watching 0 wikis
        # The name is free again, and the old token does not open the new subscription.
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T3
        > auth alpha $T1
        < E005: Invalid token or name
        "#,
    );
}

#[test]
fn a_subscription_deleted_by_another_connection() {
    check(
        r#"
        > subscribe alpha
        ! created alpha pipe
        < TOKEN: $T1
        > auth alpha $T1
        < OK
        >2 unsubscribe alpha $T1
        ! deleted alpha
        <2 OK
        # A new subscription under the same name is not the one session 1 authenticated to.
        >2 subscribe alpha
        ! created alpha pipe
        <2 TOKEN: $T2
        > list
        < E007: No such feed
        > list
        < E020: Authentication was not completed
        > auth alpha $T2
        < OK
        > insert json
        >2 unsubscribe alpha $T2
        ! deleted alpha
        <2 OK
        > [{"wiki": "enwiki"}]
        < E007: No such feed
        "#,
    );
}

/// Sends `line` on `session` and returns its one reply line (its token as `$T<n>`).
fn reply(session: &mut Session, state: &mut Subscriptions, line: &str) -> String {
    let out = session.feed_line(tokens_in(line.to_string()).as_bytes(), state);
    assert_eq!(out.replies.len(), 1, "{line}: {out:?}");
    placeholders(out.replies[0].line())
}

#[test]
fn caps_on_subscriptions_in_all_and_per_address() {
    let limits = Limits { max_subscriptions: 3, max_subscriptions_per_address: 2, ..Limits::default() };
    let mut state = Subscriptions::new(Wikis::embedded()).with_token_source(SequenceTokens(0)).with_limits(limits);
    let mut first = Session::default().from_address("192.0.2.1".parse().expect("an address"));
    let mut second = Session::default().from_address("192.0.2.2".parse().expect("an address"));
    assert_eq!(reply(&mut first, &mut state, "subscribe a1"), "TOKEN: $T1");
    assert_eq!(reply(&mut first, &mut state, "subscribe a2"), "TOKEN: $T2");
    assert_eq!(
        reply(&mut first, &mut state, "subscribe a3"),
        "E024: Too many subscriptions from this address (at most 2)"
    );
    assert_eq!(reply(&mut second, &mut state, "subscribe b1"), "TOKEN: $T3");
    assert_eq!(reply(&mut second, &mut state, "subscribe b2"), "E024: Too many subscriptions (at most 3)");
    // A deleted subscription gives its slot back, in all and to its address.
    assert_eq!(reply(&mut second, &mut state, "unsubscribe a1 $T1"), "OK");
    assert_eq!(reply(&mut first, &mut state, "subscribe a3"), "TOKEN: $T4");
    assert_eq!(state.len(), 3);
}

/// The compiled size of a pattern.
fn compiled(pattern: &str) -> usize {
    flotilla_wikimedia_core::definition::Pattern::new(pattern).expect("valid").compiled_size()
}

#[test]
fn budgets_for_compiled_patterns_name_the_pattern_past_them() {
    // Each has a required literal, so each is one unit: the pattern.
    let (a, b, c) = (r"^\w+ one$", r"^\w+ two$", r"^\w+ three$");
    let limits = Limits {
        max_pattern_memory_per_subscription: compiled(a) + compiled(b) - 1,
        max_pattern_memory: compiled(a) + compiled(b) + compiled(c) - 1,
        ..Limits::default()
    };
    let mut state = Subscriptions::new(Wikis::embedded()).with_token_source(SequenceTokens(0)).with_limits(limits);
    let mut session = Session::default();
    let document = |patterns: &[&str]| {
        let items: Vec<String> =
            patterns.iter().map(|p| format!(r#"{{"wiki":"enwiki","page_rx":{}}}"#, serde_json::json!(p))).collect();
        format!("json [{}]", items.join(","))
    };
    let insert = |patterns: &[&str]| format!("insert {}", document(patterns));
    let remove = |patterns: &[&str]| format!("remove {}", document(patterns));
    let over = |pattern: &str, whose: &str, limit: usize| {
        format!("E025: Patterns too large: {pattern:?} would take {whose} compiled patterns over {limit} bytes")
    };
    let (mine, all) = (limits.max_pattern_memory_per_subscription, limits.max_pattern_memory);
    assert_eq!(reply(&mut session, &mut state, "subscribe one"), "TOKEN: $T1");
    assert_eq!(reply(&mut session, &mut state, "auth one $T1"), "OK");
    assert_eq!(reply(&mut session, &mut state, &insert(&[a])), "1");
    assert_eq!(reply(&mut session, &mut state, &insert(&[b])), over(b, "this subscription's", mine));
    // A document whose own patterns cost more than a subscription may hold is refused
    // while it is read (here at its second pattern), before anything is applied.
    assert_eq!(reply(&mut session, &mut state, &insert(&[b, a])), over(a, "this subscription's", mine));
    assert_eq!(state.index().pattern_memory(), compiled(a));
    // The same pattern on another wiki costs nothing more (it is compiled once).
    let other_wiki = format!(r#"insert json [{{"wiki":"dewiki","page_rx":{}}}]"#, serde_json::json!(a));
    assert_eq!(reply(&mut session, &mut state, &other_wiki), "1");

    // Another subscription pays for its own patterns, shared or not …
    assert_eq!(reply(&mut session, &mut state, "subscribe two"), "TOKEN: $T2");
    assert_eq!(reply(&mut session, &mut state, "auth two $T2"), "OK");
    assert_eq!(reply(&mut session, &mut state, &insert(&[a])), "1");
    assert_eq!(reply(&mut session, &mut state, &insert(&[b])), over(b, "this subscription's", mine));
    assert_eq!(reply(&mut session, &mut state, &remove(&[a])), "1");
    assert_eq!(reply(&mut session, &mut state, &insert(&[b])), "1");
    // … while the dispatcher's budget counts each pattern once: a, b and c together are
    // one byte too many.
    assert_eq!(reply(&mut session, &mut state, "subscribe three"), "TOKEN: $T3");
    assert_eq!(reply(&mut session, &mut state, "auth three $T3"), "OK");
    assert_eq!(reply(&mut session, &mut state, &insert(&[a])), "1");
    assert_eq!(reply(&mut session, &mut state, &insert(&[c])), over(c, "the dispatcher's", all));
    assert_eq!(state.index().pattern_memory(), compiled(a) + compiled(b));
}

#[test]
fn server_framing_matches_session_limits() {
    let limits = SessionLimits::default();
    let mut buffer = b"info\r\nsubscribe x".to_vec();
    let Frame::Line { end, next } = next_line(&buffer, limits.max_line_bytes) else {
        panic!("a whole line is there");
    };
    assert_eq!(&buffer[..end], b"info\r");
    buffer.drain(..next);
    assert_eq!(next_line(&buffer, limits.max_line_bytes), Frame::Incomplete);
    buffer.extend(std::iter::repeat_n(b'x', limits.max_line_bytes));
    assert_eq!(next_line(&buffer, limits.max_line_bytes), Frame::TooLong);

    let mut session = Session::new(limits);
    let out = session.line_too_long();
    assert!(out.close && session.is_closed());
    assert_eq!(out.replies[0].line(), "E013: Line too long");
}

#[test]
fn token_reply_is_redacted_in_debug() {
    let mut state = Subscriptions::new(Wikis::embedded());
    let mut session = Session::default();
    let out = session.feed_line(b"subscribe alpha", &mut state);
    let line = out.replies[0].line();
    let token = line.strip_prefix("TOKEN: ").expect("a token reply");
    assert!(Token::parse(token).is_some(), "{line}");
    let debug = format!("{out:?}");
    assert!(!debug.contains(token), "{debug}");
}
