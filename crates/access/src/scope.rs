//! Scopes: what a credential may be used for, parsed by the RFC 6749 §3.3 grammar.
//!
//! The nine scopes and their hierarchy are declared once, in [`Scope::ALL`] and
//! [`IMPLIES`]. A [`ScopeSet`] is a 9-bit set: `Copy`, compared and combined in one
//! instruction, and small enough that tests can try every one of its 512 values.

use crate::Error;

/// The longest scope string parsed, in bytes. The nine scopes together need 89; the cap
/// leaves room for other issuers' scopes in tokens (tolerant parsing) and bounds the work.
pub const MAX_SCOPE_LEN: usize = 1024;

/// One permission scope a credential can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `mcp:read`: use MCP services (read operations).
    McpRead,
    /// `mcp:write`: configure and modify MCP services.
    McpWrite,
    /// `mcp:admin`: manage organizational MCP settings.
    McpAdmin,
    /// `user:read`: read user profile information.
    UserRead,
    /// `user:write`: update user profile.
    UserWrite,
    /// `user:token`: manage personal tokens.
    UserToken,
    /// `org:read`: view organization information.
    OrgRead,
    /// `org:write`: update organization settings.
    OrgWrite,
    /// `org:admin`: manage organization users and billing.
    OrgAdmin,
}

/// The hierarchy, as "holding the left scope grants the right one". Transitive: the
/// closure is computed from this table and nothing else.
///
/// `mcp:admin ⇒ mcp:write ⇒ mcp:read`, `org:admin ⇒ org:write ⇒ org:read`,
/// `user:write ⇒ user:read`; `user:token` stands alone.
pub const IMPLIES: [(Scope, Scope); 5] = [
    (Scope::McpAdmin, Scope::McpWrite),
    (Scope::McpWrite, Scope::McpRead),
    (Scope::OrgAdmin, Scope::OrgWrite),
    (Scope::OrgWrite, Scope::OrgRead),
    (Scope::UserWrite, Scope::UserRead),
];

impl Scope {
    /// All nine scopes, in bit order.
    pub const ALL: [Scope; 9] = [
        Scope::McpRead,
        Scope::McpWrite,
        Scope::McpAdmin,
        Scope::UserRead,
        Scope::UserWrite,
        Scope::UserToken,
        Scope::OrgRead,
        Scope::OrgWrite,
        Scope::OrgAdmin,
    ];

    /// The scope's name on the wire (`mcp:read`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::McpRead => "mcp:read",
            Scope::McpWrite => "mcp:write",
            Scope::McpAdmin => "mcp:admin",
            Scope::UserRead => "user:read",
            Scope::UserWrite => "user:write",
            Scope::UserToken => "user:token",
            Scope::OrgRead => "org:read",
            Scope::OrgWrite => "org:write",
            Scope::OrgAdmin => "org:admin",
        }
    }

    /// The scope named `name`, if it is one of the nine.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::from_name(s).ok_or_else(|| Error::UnknownScope(shorten(s)))
    }
}

const ALL_BITS: u16 = (1 << 9) - 1;

/// `EFFECTIVE[bits]` is the closure of `bits` under [`IMPLIES`], for all 512 sets,
/// computed at compile time so that checking a scope is one load and one AND.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of range fails the build, not a request"
)]
const EFFECTIVE: [u16; 512] = {
    let mut table = [0u16; 512];
    let mut bits = 0;
    while bits < 512 {
        let mut closed = bits as u16;
        // Iterate to a fixed point; the hierarchy is at most three deep.
        loop {
            let mut next = closed;
            let mut i = 0;
            while i < IMPLIES.len() {
                if next & IMPLIES[i].0.bit() != 0 {
                    next |= IMPLIES[i].1.bit();
                }
                i += 1;
            }
            if next == closed {
                break;
            }
            closed = next;
        }
        table[bits] = closed;
        bits += 1;
    }
    table
};

/// A set of [`Scope`]s, as granted to a credential.
///
/// The set holds what was *granted*; [`ScopeSet::effective`] adds what the hierarchy
/// implies, and [`ScopeSet::allows`] answers through the hierarchy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// No scopes.
    pub const EMPTY: ScopeSet = ScopeSet(0);
    /// All nine scopes.
    pub const ALL: ScopeSet = ScopeSet(ALL_BITS);

    /// The set of the given scopes.
    pub fn of(scopes: &[Scope]) -> ScopeSet {
        scopes.iter().fold(ScopeSet::EMPTY, |set, &s| set.with(s))
    }

    /// The set whose bit pattern is `bits` (bit *i* is `Scope::ALL[i]`); bits above the
    /// ninth are ignored. Lets tests and benchmarks enumerate all 512 sets.
    pub const fn from_bits_truncate(bits: u16) -> ScopeSet {
        ScopeSet(bits & ALL_BITS)
    }

    /// The bit pattern (see [`ScopeSet::from_bits_truncate`]).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// This set plus `scope`.
    #[must_use]
    pub const fn with(self, scope: Scope) -> ScopeSet {
        ScopeSet(self.0 | scope.bit())
    }

    /// Whether `scope` was granted directly (ignoring the hierarchy).
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The granted scopes plus every scope they imply.
    pub fn effective(self) -> ScopeSet {
        ScopeSet(EFFECTIVE.get(usize::from(self.0)).copied().unwrap_or(0))
    }

    /// Whether this set, through the hierarchy, grants `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        self.effective().contains(scope)
    }

    /// Scopes in both sets.
    #[must_use]
    pub const fn intersection(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    /// Scopes in either set.
    #[must_use]
    pub const fn union(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 | other.0)
    }

    /// Whether every scope of `self` is in `other` (directly, not through the hierarchy).
    pub const fn is_subset(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Strict parsing, for configuration and API requests: the RFC 6749 grammar
    /// (`scope-token *( SP scope-token )`, tokens of `%x21 / %x23-5B / %x5D-7E`), at most
    /// [`MAX_SCOPE_LEN`] bytes, every token one of the nine. The empty string is the empty
    /// set. Repeated tokens are accepted (the grammar allows them; a set ignores them).
    ///
    /// A comma-separated list (`"mcp:read,mcp:write"`, a common slip) is refused with
    /// [`Error::InvalidScopeSyntax`] saying that scopes are space-separated, rather than
    /// as one unknown scope: a comma is legal in a scope token, but none of the nine
    /// holds one.
    pub fn parse_strict(input: &str) -> Result<ScopeSet, Error> {
        check_len(input)?;
        if input.is_empty() {
            return Ok(ScopeSet::EMPTY);
        }
        let mut set = ScopeSet::EMPTY;
        for token in input.split(' ') {
            if token.is_empty() {
                return Err(Error::InvalidScopeSyntax(
                    "scopes are separated by exactly one space",
                ));
            }
            if !is_scope_token(token) {
                return Err(Error::InvalidScopeSyntax(
                    "a scope holds printable ASCII other than space, \" and \\",
                ));
            }
            if token.contains(',') {
                return Err(Error::InvalidScopeSyntax(COMMA_SEPARATED));
            }
            set = set.with(token.parse()?);
        }
        Ok(set)
    }

    /// Tolerant parsing, for scopes that arrive in tokens from an issuer: at most
    /// [`MAX_SCOPE_LEN`] bytes, split on spaces, and every token that is not exactly one of
    /// the nine (unknown, malformed, empty) is dropped. Dropped tokens never grant anything.
    pub fn parse_tolerant(input: &str) -> Result<ScopeSet, Error> {
        check_len(input)?;
        Ok(input
            .split(' ')
            .filter_map(Scope::from_name)
            .fold(ScopeSet::EMPTY, ScopeSet::with))
    }
}

/// What [`ScopeSet::parse_strict`] says about `"mcp:read,mcp:write"`.
const COMMA_SEPARATED: &str =
    "scopes are space-separated, not comma-separated (write \"mcp:read mcp:write\")";

fn check_len(input: &str) -> Result<(), Error> {
    if input.len() > MAX_SCOPE_LEN {
        return Err(Error::ScopeTooLong {
            len: input.len(),
            max: MAX_SCOPE_LEN,
        });
    }
    Ok(())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Unknown names are echoed in errors to help operators fix configuration, but cut short
/// and restricted to the scope-token alphabet so an error line cannot be abused.
fn shorten(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

/// Space-separated, in bit order: the canonical form (`"mcp:read org:read"`).
impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScopeSet({self})")
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(ScopeSet::EMPTY, ScopeSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hierarchy_is_what_the_security_model_says() {
        let grants = |s: Scope| ScopeSet::of(&[s]).effective();
        assert_eq!(
            grants(Scope::McpAdmin),
            ScopeSet::of(&[Scope::McpAdmin, Scope::McpWrite, Scope::McpRead])
        );
        assert_eq!(
            grants(Scope::McpWrite),
            ScopeSet::of(&[Scope::McpWrite, Scope::McpRead])
        );
        assert_eq!(
            grants(Scope::OrgAdmin),
            ScopeSet::of(&[Scope::OrgAdmin, Scope::OrgWrite, Scope::OrgRead])
        );
        assert_eq!(
            grants(Scope::OrgWrite),
            ScopeSet::of(&[Scope::OrgWrite, Scope::OrgRead])
        );
        assert_eq!(
            grants(Scope::UserWrite),
            ScopeSet::of(&[Scope::UserWrite, Scope::UserRead])
        );
        for alone in [
            Scope::McpRead,
            Scope::UserRead,
            Scope::UserToken,
            Scope::OrgRead,
        ] {
            assert_eq!(grants(alone), ScopeSet::of(&[alone]));
        }
        assert!(!ScopeSet::of(&[Scope::UserWrite]).allows(Scope::UserToken));
        assert!(!ScopeSet::of(&[Scope::OrgAdmin]).allows(Scope::McpRead));
    }

    #[test]
    fn strict_parsing() {
        assert_eq!(
            ScopeSet::parse_strict("mcp:read org:admin").unwrap(),
            ScopeSet::of(&[Scope::McpRead, Scope::OrgAdmin])
        );
        assert_eq!(ScopeSet::parse_strict("").unwrap(), ScopeSet::EMPTY);
        assert_eq!(
            ScopeSet::parse_strict("mcp:read mcp:read").unwrap(),
            ScopeSet::of(&[Scope::McpRead])
        );
        assert!(matches!(
            ScopeSet::parse_strict("mcp:read  org:read"),
            Err(Error::InvalidScopeSyntax(_))
        ));
        assert!(matches!(
            ScopeSet::parse_strict(" mcp:read"),
            Err(Error::InvalidScopeSyntax(_))
        ));
        assert!(matches!(
            ScopeSet::parse_strict("mcp:read\torg:read"),
            Err(Error::InvalidScopeSyntax(_))
        ));
        assert!(matches!(
            ScopeSet::parse_strict("mcp:\"read"),
            Err(Error::InvalidScopeSyntax(_))
        ));
        assert!(
            matches!(ScopeSet::parse_strict("MCP:READ"), Err(Error::UnknownScope(s)) if s == "MCP:READ")
        );
        assert!(matches!(
            ScopeSet::parse_strict("mcp:*"),
            Err(Error::UnknownScope(_))
        ));
        let long = "mcp:read ".repeat(200);
        assert!(matches!(
            ScopeSet::parse_strict(&long),
            Err(Error::ScopeTooLong { .. })
        ));
    }

    /// Issue 18: a comma-separated list says scopes are space-separated, instead of
    /// "unknown scope \"mcp:read,mcp:write\"".
    #[test]
    fn comma_separated_scopes_are_told_to_use_spaces() {
        for input in [
            "mcp:read,mcp:write",
            "mcp:read, mcp:write",
            "mcp:read mcp:write,org:read",
            ",mcp:read",
            "mcp:read,",
        ] {
            let error = ScopeSet::parse_strict(input).unwrap_err();
            assert_eq!(
                error,
                Error::InvalidScopeSyntax(COMMA_SEPARATED),
                "{input:?}"
            );
            assert!(error.to_string().contains("space-separated"), "{error}");
        }
        // The suggestion is right: the same scopes, space-separated, parse.
        assert_eq!(
            ScopeSet::parse_strict("mcp:read mcp:write").unwrap(),
            ScopeSet::of(&[Scope::McpRead, Scope::McpWrite])
        );
        // Tolerant parsing (tokens from an issuer) still drops such a token: it grants nothing.
        assert_eq!(
            ScopeSet::parse_tolerant("mcp:read,mcp:write").unwrap(),
            ScopeSet::EMPTY
        );
    }

    #[test]
    fn tolerant_parsing_drops_what_it_does_not_know() {
        assert_eq!(
            ScopeSet::parse_tolerant("openid mcp:write  profile mcp:admin\u{0} MCP:ADMIN").unwrap(),
            ScopeSet::of(&[Scope::McpWrite])
        );
        assert_eq!(ScopeSet::parse_tolerant("").unwrap(), ScopeSet::EMPTY);
        assert!(ScopeSet::parse_tolerant(&"x".repeat(MAX_SCOPE_LEN + 1)).is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips_through_strict(bits in 0u16..512) {
            let set = ScopeSet::from_bits_truncate(bits);
            prop_assert_eq!(ScopeSet::parse_strict(&set.to_string()).unwrap(), set);
            prop_assert_eq!(ScopeSet::parse_tolerant(&set.to_string()).unwrap(), set);
        }

        #[test]
        fn tolerant_grants_no_more_than_strict(input in "[ -~]{0,120}") {
            let tolerant = ScopeSet::parse_tolerant(&input).unwrap();
            if let Ok(strict) = ScopeSet::parse_strict(&input) {
                prop_assert_eq!(strict, tolerant);
            }
            // Every scope tolerant parsing kept appears verbatim as a token.
            for scope in tolerant.iter() {
                prop_assert!(input.split(' ').any(|t| t == scope.as_str()));
            }
        }

        /// Any set written with commas instead of spaces is refused as comma-separated,
        /// never parsed as something else.
        #[test]
        fn any_comma_joined_set_is_refused_as_comma_separated(bits in 0u16..512) {
            let set = ScopeSet::from_bits_truncate(bits);
            let names: Vec<&str> = set.iter().map(Scope::as_str).collect();
            let joined = names.join(",");
            if names.len() > 1 {
                prop_assert_eq!(
                    ScopeSet::parse_strict(&joined),
                    Err(Error::InvalidScopeSyntax(COMMA_SEPARATED))
                );
            }
        }

        #[test]
        fn effective_is_a_closure(bits in 0u16..512) {
            let set = ScopeSet::from_bits_truncate(bits);
            let eff = set.effective();
            prop_assert!(set.is_subset(eff));
            prop_assert_eq!(eff.effective(), eff);
            for (from, to) in IMPLIES {
                prop_assert!(!eff.contains(from) || eff.contains(to));
            }
        }
    }
}
