//! Whether a statement's text names a table, for `binlog show --table`: a match of words in
//! the text, not a parse of SQL. A name counts where it stands as a word (bare, `quoted`, or
//! "quoted"), qualified by the word before a `.` if there is one, else by the statement's
//! default database; names compare without regard to ASCII case. String literals ('...') are
//! passed over; comments are read (MariaDB runs what `/*! ... */` holds).

use std::borrow::Cow;

/// One word of a statement, or what stands between words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Word(Cow<'a, [u8]>),
    Dot,
    Other,
}

/// The tokens of `text`, one after another; every step moves on by at least one byte.
struct Tokens<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.text;
        while self.at < t.len() && t[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
        let start = self.at;
        let c = *t.get(start)?;
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        match c {
            b'.' => {
                self.at += 1;
                Some(Token::Dot)
            }
            b'\'' => {
                self.quoted(b'\'');
                Some(Token::Other)
            }
            b'`' | b'"' => Some(Token::Word(self.quoted(c))),
            c if word(c) => {
                while self.at < t.len() && word(t[self.at]) {
                    self.at += 1;
                }
                Some(Token::Word(Cow::Borrowed(&t[start..self.at])))
            }
            _ => {
                self.at += 1;
                Some(Token::Other)
            }
        }
    }
}

impl<'a> Tokens<'a> {
    /// From an opening `quote`, to after its closing one (or the text's end): what it holds,
    /// a doubled quote read as one (and, in a string, a backslash's next byte passed over).
    fn quoted(&mut self, quote: u8) -> Cow<'a, [u8]> {
        let t = self.text;
        let first = self.at + 1;
        let mut i = first;
        let mut doubled = false;
        while i < t.len() {
            if t[i] == b'\\' && quote == b'\'' {
                i += 2;
            } else if t[i] == quote && t.get(i + 1) == Some(&quote) {
                doubled = true;
                i += 2;
            } else if t[i] == quote {
                break;
            } else {
                i += 1;
            }
        }
        let inner = &t[first.min(t.len())..i.min(t.len())];
        self.at = (i + 1).min(t.len());
        if doubled {
            let mut out = Vec::with_capacity(inner.len());
            let mut j = 0;
            while j < inner.len() {
                out.push(inner[j]);
                j += if inner[j] == quote { 2 } else { 1 };
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(inner)
        }
    }
}

/// Does `text` (run with default database `default_db`, empty if none) name `db`.`table`?
pub(crate) fn names_table(text: &[u8], default_db: &[u8], db: &str, table: &str) -> bool {
    let same = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
    // The two tokens before the one read: `q` `.` `t` is `t` qualified by `q`.
    let (mut two_back, mut one_back) = (Token::Other, Token::Other);
    for token in (Tokens { text, at: 0 }) {
        if let Token::Word(w) = &token {
            if same(w, table) {
                let qualifier = match (&two_back, &one_back) {
                    (Token::Word(q), Token::Dot) => q.as_ref(),
                    _ => default_db,
                };
                if same(qualifier, db) {
                    return true;
                }
            }
        }
        two_back = std::mem::replace(&mut one_back, token);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::names_table;

    #[test]
    fn a_table_is_named_as_a_word_quoted_or_qualified() {
        let names = |text: &str, default: &str| names_table(text.as_bytes(), default.as_bytes(), "shop", "orders");
        // Bare, quoted, qualified, in any case, with the default database.
        for text in [
            "DROP TABLE orders",
            "drop table `orders`",
            "TRUNCATE TABLE ORDERS",
            "UPDATE orders SET a=1",
            "DELETE FROM \"orders\"",
            "INSERT INTO orders(id) VALUES (1)",
            "ALTER TABLE orders ADD c INT",
        ] {
            assert!(names(text, "shop"), "{text}");
            assert!(!names(text, "other"), "{text}: another default database");
            assert!(!names(text, ""), "{text}: no default database");
        }
        // Qualified: the qualifier decides, whatever the default database.
        for text in [
            "DROP TABLE shop.orders",
            "DROP TABLE `shop`.`orders`",
            "drop table SHOP . `Orders`",
            "RENAME TABLE `shop`.orders TO shop.old",
            "/*!40005 DROP TABLE IF EXISTS */ `shop`.`orders`",
        ] {
            assert!(names(text, "other"), "{text}");
            assert!(names(text, ""), "{text}");
        }
        assert!(!names("DROP TABLE other.orders", "shop"), "another database's table");
        assert!(!names("DROP TABLE `other`.`orders`", "shop"));
        // Not a part of another name, nor a string, nor a column of another table.
        for text in [
            "DROP TABLE orders2",
            "DROP TABLE old_orders",
            "DROP TABLE `orders_old`",
            "INSERT INTO t VALUES ('orders')",
            "INSERT INTO t VALUES ('it''s orders')",
            "INSERT INTO t VALUES ('a\\' orders')",
            "UPDATE t SET x.orders = 1",
            "DROP TABLE `shop.orders`",
            "SELECT 1",
            "",
        ] {
            assert!(!names(text, "shop"), "{text}");
        }
        // A doubled quote inside a quoted name is one.
        assert!(names_table(b"DROP TABLE `a``b`", b"shop", "shop", "a`b"));
        // A column qualified by the table counts (a word match: the table is named).
        assert!(names("SELECT orders.id FROM t", "shop"));
    }

    proptest::proptest! {
        /// Any bytes: no panic, and the answer is a word match (a text with no byte of the
        /// name cannot match).
        #[test]
        fn any_text_is_read_without_panic(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let found = names_table(&text, b"d", "d", "zz");
            proptest::prop_assert!(!found || text.iter().any(|b| b.eq_ignore_ascii_case(&b'z')));
        }
    }
}
