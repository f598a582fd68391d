//! The page's static files, embedded in the binary: one stylesheet and one small script
//! (live updates only). Each is served under a URL holding a hash of its content
//! (`/assets/style.3f2a….css`), so browsers may cache it forever and a new build's
//! files are fetched at once; any other name is a 404.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// Its URL, with the content hash.
    pub path: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

fn asset(stem: &str, extension: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let digest = Sha256::digest(body);
    let hash = crate::security::hex(&digest[..8]);
    Asset { path: format!("/assets/{stem}.{hash}.{extension}"), content_type, body }
}

pub static STYLE: LazyLock<Asset> =
    LazyLock::new(|| asset("style", "css", "text/css; charset=utf-8", include_bytes!("../assets/style.css")));

pub static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| asset("live", "js", "text/javascript; charset=utf-8", include_bytes!("../assets/live.js")));

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&*STYLE, &*SCRIPT].into_iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_only_under_their_hashed_names() {
        let style = &STYLE.path;
        assert!(
            style.starts_with("/assets/style.")
                && style.ends_with(".css")
                && style.len() == "/assets/style..css".len() + 16
        );
        let cases = [
            (style.as_str(), true),
            (SCRIPT.path.as_str(), true),
            ("/assets/style.css", false),
            ("/assets/style.0000000000000000.css", false),
            ("/assets/../Cargo.toml", false),
        ];
        for (path, found) in cases {
            assert_eq!(find(path).is_some(), found, "{path}");
        }
    }
}
