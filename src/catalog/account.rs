//! Who a job runs as on a node: the login user, or another user it becomes.
//!
//! A node's [`Become`] says whether its jobs become another user by default (`become:` in the
//! catalog, or `--become`), which user (`become_user`, root by default) and how
//! (`become_method`: sudo, su or doas). An orchestration's entry or job can turn it on or off
//! and name another user; [`Become::account`] folds those into the [`Account`] a job runs as.
//! The transport starts one executor per account a node needs (see
//! `transport::escalate`); nothing here runs anything.

/// How the login user becomes another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum BecomeMethod {
    #[default]
    Sudo,
    Su,
    Doas,
}

impl BecomeMethod {
    pub const NAMES: &'static [&'static str] = &["sudo", "su", "doas"];

    pub fn parse(text: &str) -> Option<BecomeMethod> {
        match text {
            "sudo" => Some(BecomeMethod::Sudo),
            "su" => Some(BecomeMethod::Su),
            "doas" => Some(BecomeMethod::Doas),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BecomeMethod::Sudo => "sudo",
            BecomeMethod::Su => "su",
            BecomeMethod::Doas => "doas",
        }
    }
}

/// A node's become settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Become {
    /// Jobs become `user` unless their entry or job says `become: false`.
    pub enabled: bool,
    pub user: String,
    pub method: BecomeMethod,
}

impl Default for Become {
    fn default() -> Self {
        Become { enabled: false, user: "root".to_string(), method: BecomeMethod::Sudo }
    }
}

/// Who one job runs as on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    /// The user the node is logged in as.
    Login,
    /// Another user, through `method`.
    Become { user: String, method: BecomeMethod },
}

impl Account {
    /// The user a job runs as, for its fingerprint and messages; `None` for the login user.
    pub fn user(&self) -> Option<&str> {
        match self {
            Account::Login => None,
            Account::Become { user, .. } => Some(user),
        }
    }
}

impl Become {
    /// The account of a job whose entry and job say `enabled` and `user` (the job's over the
    /// entry's, already folded). A `become_user` alone turns become on: naming a user and
    /// running as another would be ignoring what was written.
    pub fn account(&self, enabled: Option<bool>, user: Option<&str>) -> Account {
        let on = enabled.unwrap_or(self.enabled || user.is_some());
        if !on {
            return Account::Login;
        }
        Account::Become { user: user.unwrap_or(&self.user).to_string(), method: self.method }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_fold_node_entry_and_job() {
        let off = Become::default();
        let on = Become { enabled: true, ..Become::default() };
        let root = Account::Become { user: "root".into(), method: BecomeMethod::Sudo };
        assert_eq!(off.account(None, None), Account::Login);
        assert_eq!(on.account(None, None), root);
        assert_eq!(on.account(Some(false), None), Account::Login);
        assert_eq!(off.account(Some(true), None), root);
        assert_eq!(off.account(None, Some("postgres")).user(), Some("postgres"));
        assert_eq!(on.account(Some(false), Some("postgres")), Account::Login);
        assert_eq!(BecomeMethod::parse("doas").map(BecomeMethod::name), Some("doas"));
        assert_eq!(BecomeMethod::parse("pbrun"), None);
    }
}
