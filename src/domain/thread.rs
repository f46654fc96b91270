//! Context threads: the group conversation of one business context (a
//! booking, a dispute), whose members the host platform sets. The rules here
//! are pure: who a member is, what a new member list changes, and what the
//! timeline says about it (system messages).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ChatError, UserId, ids::SYSTEM_SENDER};

/// The `event` of a system message about a member joining or leaving.
pub const MEMBER_JOINED: &str = "member.joined";
pub const MEMBER_LEFT: &str = "member.left";

/// Longest role or system-event name.
const MAX_NAME_CHARS: usize = 64;

/// A member of a thread and their role in the business (e.g. `worker`,
/// `supervisor`, `borrower_admin`, `party`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThreadMember {
    /// Checked by [`validate_members`] (deserialising does not check it).
    #[schema(value_type = String, schema_with = super::ids::user_id_schema)]
    pub user_id: UserId,
    #[schema(schema_with = name_schema)]
    pub role: String,
}

/// A member's role or an event name as the OpenAPI document states it.
pub fn name_schema() -> utoipa::openapi::Object {
    super::schema::matching(
        "^[a-z0-9_.-]+$",
        MAX_NAME_CHARS,
        "1-64 characters of a-z, 0-9, '_', '.' and '-'",
    )
}

/// Checks a role or an event name: 1-64 of `a-z 0-9 _ . -`, so clients can
/// use it as a key (labels are the client's business).
fn check_name(code: &'static str, what: &str, value: &str) -> Result<(), ChatError> {
    let fine = !value.is_empty()
        && value.chars().count() <= MAX_NAME_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if fine {
        Ok(())
    } else {
        Err(ChatError::invalid(
            code,
            format!("{what} is 1-{MAX_NAME_CHARS} characters of a-z, 0-9, '_', '.' and '-'"),
        ))
    }
}

/// Checks a member list: roles well formed, nobody twice, at most `max`.
pub fn validate_members(members: &[ThreadMember], max: usize) -> Result<(), ChatError> {
    if members.len() > max {
        return Err(ChatError::invalid(
            "too_many_members",
            format!("a thread has at most {max} members"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for member in members {
        UserId::parse(member.user_id.as_str())?;
        check_name("invalid_role", "a member's role", &member.role)?;
        if member.user_id.as_str() == SYSTEM_SENDER {
            return Err(ChatError::invalid(
                "invalid_user_id",
                "that user id is reserved",
            ));
        }
        if !seen.insert(&member.user_id) {
            return Err(ChatError::invalid(
                "duplicate_member",
                format!("{} is listed twice", member.user_id),
            ));
        }
    }
    Ok(())
}

/// Checks the event name of a system message the platform posts.
pub fn validate_event(event: &str) -> Result<(), ChatError> {
    check_name("invalid_kind", "a system message's kind", event)
}

/// What a new member list changes: who joins, who leaves, whose role
/// changes. Empty when the list is the same (a repeated call does nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChange {
    pub joined: Vec<ThreadMember>,
    pub left: Vec<UserId>,
    pub role_changed: Vec<ThreadMember>,
}

impl MembershipChange {
    /// From the current members (with their roles) to `wanted`, in the
    /// order `wanted` lists them (leavers in the current order).
    pub fn between(current: &[(UserId, Option<String>)], wanted: &[ThreadMember]) -> Self {
        let mut change = Self::default();
        for member in wanted {
            match current.iter().find(|(id, _)| id == &member.user_id) {
                None => change.joined.push(member.clone()),
                Some((_, role)) if role.as_deref() != Some(member.role.as_str()) => {
                    change.role_changed.push(member.clone())
                }
                Some(_) => {}
            }
        }
        change.left = current
            .iter()
            .filter(|(id, _)| !wanted.iter().any(|m| &m.user_id == id))
            .map(|(id, _)| id.clone())
            .collect();
        change
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && self.role_changed.is_empty()
    }
}

/// What a system message is about, stored in its metadata and shown to
/// clients so they can render (and translate) it themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemEvent {
    /// `member.joined`, `member.left`, or the platform's own kind.
    pub event: String,
    /// The member it is about (joins and leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Their role (joins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl SystemEvent {
    /// The message of `name` joining as `role`.
    pub fn joined(member: &ThreadMember, name: &str) -> (Self, String) {
        (
            Self {
                event: MEMBER_JOINED.into(),
                user_id: Some(member.user_id.to_string()),
                role: Some(member.role.clone()),
            },
            format!("{name} joined as {}", member.role.replace('_', " ")),
        )
    }

    /// The message of `name` leaving.
    pub fn left(user: &UserId, name: &str) -> (Self, String) {
        (
            Self {
                event: MEMBER_LEFT.into(),
                user_id: Some(user.to_string()),
                role: None,
            },
            format!("{name} left"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, role: &str) -> ThreadMember {
        ThreadMember {
            user_id: UserId::parse(id).unwrap(),
            role: role.into(),
        }
    }

    fn current(list: &[(&str, &str)]) -> Vec<(UserId, Option<String>)> {
        list.iter()
            .map(|(id, role)| (UserId::parse(id).unwrap(), Some((*role).to_owned())))
            .collect()
    }

    #[test]
    fn a_new_list_joins_leaves_and_changes_roles_and_the_same_list_changes_nothing() {
        let now = current(&[("w", "worker"), ("s", "supervisor"), ("a", "lender_admin")]);
        let wanted = [
            member("w", "worker"),
            member("s", "borrower_manager"),
            member("p", "party"),
        ];
        let change = MembershipChange::between(&now, &wanted);
        assert_eq!(change.joined, vec![member("p", "party")]);
        assert_eq!(change.left, vec![UserId::parse("a").unwrap()]);
        assert_eq!(change.role_changed, vec![member("s", "borrower_manager")]);
        let same = current(&[("w", "worker"), ("s", "borrower_manager"), ("p", "party")]);
        assert!(MembershipChange::between(&same, &wanted).is_empty());
    }

    #[test]
    fn member_lists_are_checked() {
        let ok = [member("w", "worker"), member("s", "borrower_admin")];
        assert!(validate_members(&ok, 50).is_ok());
        let code = |list: &[ThreadMember], max| validate_members(list, max).unwrap_err().code();
        assert_eq!(code(&ok, 1), "too_many_members");
        assert_eq!(
            code(&[member("w", "worker"), member("w", "party")], 50),
            "duplicate_member"
        );
        for bad in ["", "Worker", "a role", "x".repeat(65).as_str()] {
            assert_eq!(code(&[member("w", bad)], 50), "invalid_role");
        }
        assert_eq!(
            code(&[member(SYSTEM_SENDER, "worker")], 50),
            "invalid_user_id"
        );
        assert!(validate_event("booking.confirmed").is_ok());
        assert!(validate_event("<b>").is_err());
    }

    #[test]
    fn system_messages_say_who_joined_as_what() {
        let (event, body) = SystemEvent::joined(&member("w", "borrower_admin"), "Ana");
        assert_eq!(body, "Ana joined as borrower admin");
        assert_eq!(event.event, MEMBER_JOINED);
        let (event, body) = SystemEvent::left(&UserId::parse("w").unwrap(), "Ana");
        assert_eq!(
            (event.event.as_str(), body.as_str()),
            (MEMBER_LEFT, "Ana left")
        );
    }
}
