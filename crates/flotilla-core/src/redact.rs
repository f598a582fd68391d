//! Secrets kept out of what is shown: logs, errors, `flotilla check`, status.
//!
//! Passwords travel inside URLs (`postgres://u:pw@h/db`, `redis://:pw@h`,
//! `?password=pw`); [`redact_url`] is the one way to show such a URL.

/// The URL with any password replaced by `***`, for logs and errors: the one in the
/// user information (`postgres://u:pw@h/db`, `redis://:pw@h`) and any query parameter
/// whose name ends in `password` (`?password=pw`, libpq's `sslpassword`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end]);
    let authority = &url[scheme_end..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            out.push_str(&format!("{user}:***@{host}"));
        }
        _ => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    let (before_fragment, fragment) = rest.split_once('#').map_or((rest, None), |(r, f)| (r, Some(f)));
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => format!("{name}=***"),
                    _ => param.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, finding 10: no way of writing a password into a URL survives.
    #[test]
    fn redact_url_hides_every_password() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p:w@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("postgres://h/db?user=u&password=pw", "postgres://h/db?user=u&password=***"),
            (
                "postgres://h/db?PASSWORD=pw&sslpassword=k&sslmode=require",
                "postgres://h/db?PASSWORD=***&sslpassword=***&sslmode=require",
            ),
            ("postgresql://u:a@b@h/db?password=pw#frag", "postgresql://u:***@h/db?password=***#frag"),
            // Nothing secret: left as it is, even with an '@' past the host.
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h:5432/db?options=a@b:c", "postgres://h:5432/db?options=a@b:c"),
            ("sqlite://data/flotilla.db", "sqlite://data/flotilla.db"),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
