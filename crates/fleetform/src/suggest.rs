//! "Did you mean …?": the one place that picks the candidate a misspelt word was meant to be.
//!
//! Two kinds of words are misspelt, and one measure does not serve both, so [`closest`]
//! takes the [`Likeness`] to judge by:
//!
//! - [`Likeness::Name`] — names in a deployment file (nodes, properties, annotations, enum
//!   values) and deployment names on the command line. Jaro–Winkler, ignoring ASCII case,
//!   above 0.8: it weighs a shared beginning, which is how these names are mistyped
//!   (`restart-polcy`, `runing`), and it scales with length, so short words do not all look
//!   alike. On a tie the later candidate wins.
//! - [`Likeness::Keyword`] — the query language's upper-case function names. At most two
//!   edits (Levenshtein) from the upper-cased word: these names differ from their typos by
//!   an underscore or two (`STARTS_WITH`, `IS_DEFIND`), which Jaro–Winkler under-rates for
//!   short names and over-rates for the many `IS_…` names sharing a prefix. On a tie the
//!   earlier candidate wins.
//!
//! The rules, including which candidate wins a tie, are exactly those spec and query used
//! before they shared this module; the tests below pin their outputs.

/// How to judge that a misspelt word was meant to be a candidate; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Likeness {
    /// Jaro–Winkler similarity above [`NAME_SIMILARITY`], ignoring ASCII case.
    Name,
    /// At most [`KEYWORD_EDITS`] edits from the word upper-cased.
    Keyword,
}

/// The Jaro–Winkler similarity a [`Likeness::Name`] candidate must exceed.
pub const NAME_SIMILARITY: f64 = 0.8;

/// The most edits between a [`Likeness::Keyword`] candidate and the word.
pub const KEYWORD_EDITS: usize = 2;

/// The candidate `given` most likely misspells, if any is close enough to suggest.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>, likeness: Likeness) -> Option<&'a str> {
    match likeness {
        Likeness::Name => {
            let given = given.to_ascii_lowercase();
            candidates
                .into_iter()
                .map(|c| (strsim::jaro_winkler(&given, &c.to_ascii_lowercase()), c))
                .filter(|(score, _)| *score > NAME_SIMILARITY)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| c)
        }
        Likeness::Keyword => {
            let given = given.to_ascii_uppercase();
            candidates
                .into_iter()
                .map(|c| (strsim::levenshtein(&given, c), c))
                .filter(|(edits, _)| *edits <= KEYWORD_EDITS)
                .min_by_key(|(edits, _)| *edits)
                .map(|(_, c)| c)
        }
    }
}

/// [`closest`] for names (see [`Likeness::Name`]).
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    closest(given, candidates, Likeness::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTIONS: &[&str] = &[
        "IS_DEFINED",
        "IS_NULL",
        "IS_BOOL",
        "IS_NUMBER",
        "IS_STRING",
        "IS_OBJECT",
        "IS_ARRAY",
        "IS_PRIMITIVE",
        "STARTSWITH",
        "ENDSWITH",
    ];

    /// The suggestions the deployment files' diagnostics gave before this module.
    #[test]
    fn names_keep_their_suggestions() {
        let statuses = ["running", "stopped"];
        assert_eq!(did_you_mean("runing", statuses), Some("running"));
        assert_eq!(did_you_mean("RUNNING", statuses), Some("running"));
        assert_eq!(did_you_mean("paused", statuses), None);
        assert_eq!(did_you_mean("deploymnet", ["deployment", "layered"]), Some("deployment"));
        assert_eq!(did_you_mean("layerd", ["deployment", "layered"]), Some("layered"));
        assert_eq!(did_you_mean("secert", ["env", "secret", "secret-env"]), Some("secret"));
        assert_eq!(did_you_mean("imag", ["image", "version"]), Some("image"));
        assert_eq!(
            did_you_mean("restart-polcy", ["status", "restart-policy", "startup-order"]),
            Some("restart-policy")
        );
        assert_eq!(did_you_mean("x", ["image"]), None);
    }

    /// Jaro–Winkler ties go to the later candidate, as `max_by` always chose.
    #[test]
    fn name_ties_go_to_the_later_candidate() {
        assert_eq!(did_you_mean("ab", ["ab", "AB"]), Some("AB"));
    }

    /// The suggestions the query language's errors gave before this module.
    #[test]
    fn keywords_keep_their_suggestions() {
        let f = |name| closest(name, FUNCTIONS.iter().copied(), Likeness::Keyword);
        assert_eq!(f("STARTS_WITH"), Some("STARTSWITH"));
        assert_eq!(f("is_defind"), Some("IS_DEFINED"));
        assert_eq!(f("ends_with"), Some("ENDSWITH"));
        assert_eq!(f("LOWER"), None);
        assert_eq!(f("IS_NOOL"), Some("IS_BOOL"));
        // Two edits from both IS_NULL and IS_BOOL: the earlier one, as `min_by_key` chose.
        assert_eq!(f("IS_NBOL"), Some("IS_NULL"));
    }

    /// Why one measure does not serve both: each would change the other's suggestions.
    #[test]
    fn the_two_likenesses_differ() {
        assert_eq!(closest("IS_DEF", FUNCTIONS.iter().copied(), Likeness::Keyword), None);
        assert_eq!(closest("IS_DEF", FUNCTIONS.iter().copied(), Likeness::Name), Some("IS_DEFINED"));
        assert_eq!(closest("stoped", ["running", "stopped"], Likeness::Keyword), None);
        assert_eq!(closest("stoped", ["running", "stopped"], Likeness::Name), Some("stopped"));
    }
}
