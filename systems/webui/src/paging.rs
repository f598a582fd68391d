//! Paging through the IRC log newest first by id (keyset paging): a page is the rows
//! with an id below a cursor, so a page costs the same however deep it is and lines
//! logged meanwhile do not shift it.

/// Lines per page.
pub const PAGE_SIZE: usize = 50;

/// One page: the rows to show, and the cursor of the next (older) page if there is one.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// Pass as `before` to get the next page.
    pub older: Option<i64>,
}

/// Cuts `fetched` (up to `size + 1` rows, newest first, as the query asked for one more
/// than a page to learn whether another page follows) into a page; `id` gives a row's id.
pub fn page<T>(mut fetched: Vec<T>, size: usize, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = fetched.len() > size;
    fetched.truncate(size);
    let older = if more { fetched.last().map(&id) } else { None };
    Page { rows: fetched, older }
}

/// The `before` cursor from a query string value: a positive id, or none (the newest page).
pub fn cursor(text: Option<&str>) -> Option<i64> {
    text.and_then(|t| t.trim().parse::<i64>().ok()).filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_knows_whether_an_older_one_follows() {
        // (ids fetched, page size, rows shown, older cursor)
        type Case<'a> = (&'a [i64], usize, &'a [i64], Option<i64>);
        let cases: &[Case] = &[
            (&[], 3, &[], None),
            (&[9, 8], 3, &[9, 8], None),
            (&[9, 8, 7], 3, &[9, 8, 7], None),
            (&[9, 8, 7, 6], 3, &[9, 8, 7], Some(7)),
        ];
        for (fetched, size, rows, older) in cases {
            let page = page(fetched.to_vec(), *size, |id| *id);
            assert_eq!(page, Page { rows: rows.to_vec(), older: *older }, "{fetched:?}");
        }
    }

    #[test]
    fn a_cursor_is_a_positive_id_or_none() {
        let cases = [
            (None, None),
            (Some(""), None),
            (Some("12"), Some(12)),
            (Some(" 5 "), Some(5)),
            (Some("-3"), None),
            (Some("0"), None),
            (Some("x"), None),
        ];
        for (text, expected) in cases {
            assert_eq!(cursor(text), expected, "{text:?}");
        }
    }
}
