//! An error with its causes on one line, for logs, status fields and `errmsg`, where
//! one string must carry what anyhow's `{:#}` would print.

/// The error's message, then each cause, `: `-separated. A cause whose text the line
/// already holds is left out (some libraries repeat their cause in their own message).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn causes_follow_the_message_once() {
        let inner = Layer("connection refused", None);
        let middle = Layer("error sending request", Some(Box::new(inner)));
        assert_eq!(error_chain(&middle), "error sending request: connection refused");
        let repeating = Layer("reading x: connection refused", Some(Box::new(Layer("connection refused", None))));
        assert_eq!(error_chain(&repeating), "reading x: connection refused");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
