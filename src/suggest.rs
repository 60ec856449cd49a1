//! "Did you mean": the closest known name to a mistyped one. One rule for
//! the CLI (KPI ids, CSV columns) and the server (team and rep ids of a
//! scope), so both suggest alike.

/// The candidate closest to `word`, ignoring ASCII case, when it is close
/// enough to be what was meant: a Jaro-Winkler similarity of at least 0.8.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` when one of `candidates` is [`closest`] to `word`,
/// else nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean {c:?}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested() {
        let ids = ["revenue", "orders", "win_rate"];
        assert_eq!(did_you_mean("revenu", ids), "; did you mean \"revenue\"?");
        assert_eq!(did_you_mean("WINRATE", ids), "; did you mean \"win_rate\"?");
        assert_eq!(did_you_mean("nps", ids), "");
        // Two letters swapped in a short id.
        assert_eq!(closest("emae", ["emea", "apac"]), Some("emea"));
        assert_eq!(closest("zz-9", ["emea", "apac"]), None);
        assert_eq!(closest("emea", std::iter::empty()), None);
    }
}
