//! Rows for Postgres `COPY … FROM STDIN` in its text format (the default format):
//! fields separated by tabs, one row per line, `\N` for NULL, and backslash, tab,
//! newline and carriage return escaped with a backslash. Built here, beside
//! [`crate::Store::copy_in`], so no caller has to know the escaping rules.

/// A batch of rows in COPY's text format.
#[derive(Debug, Default)]
pub struct CopyRows {
    data: Vec<u8>,
    row_started: bool,
}

impl CopyRows {
    /// Appends a text field (`None` is NULL). Postgres refuses NUL characters in text,
    /// so they become U+FFFD.
    pub fn field(&mut self, value: Option<&str>) -> &mut Self {
        if self.row_started {
            self.data.push(b'\t');
        }
        self.row_started = true;
        let Some(text) = value else {
            self.data.extend_from_slice(b"\\N");
            return self;
        };
        for &byte in text.as_bytes() {
            match byte {
                b'\\' => self.data.extend_from_slice(b"\\\\"),
                b'\t' => self.data.extend_from_slice(b"\\t"),
                b'\n' => self.data.extend_from_slice(b"\\n"),
                b'\r' => self.data.extend_from_slice(b"\\r"),
                0 => self.data.extend_from_slice("\u{fffd}".as_bytes()),
                _ => self.data.push(byte),
            }
        }
        self
    }

    /// Appends an integer field.
    pub fn number(&mut self, value: i64) -> &mut Self {
        self.field(Some(&value.to_string()))
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.data.push(b'\n');
        self.row_started = false;
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The data to send with the COPY statement.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_as_copy_text_wants() {
        let mut rows = CopyRows::default();
        rows.field(Some("a\tb")).field(None).field(Some("back\\slash\nnew\rline")).number(-7).end_row();
        rows.field(Some("")).field(Some("nul\0byte")).field(Some("\\N")).number(1).end_row();
        assert_eq!(
            String::from_utf8(rows.as_bytes().to_vec()).unwrap(),
            "a\\tb\t\\N\tback\\\\slash\\nnew\\rline\t-7\n\tnul\u{fffd}byte\t\\\\N\t1\n"
        );
    }
}
