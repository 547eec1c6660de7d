//! `application/x-www-form-urlencoded` bodies into typed forms, each checked here so
//! a handler only ever sees a valid request or a message to show beside the form.

use chrono::NaiveDate;

use super::backend::Vacation;

/// The longest password we accept (argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD: usize = 1024;
/// The shortest new password.
pub const MIN_PASSWORD: usize = 10;
pub const MAX_APP_PASSWORD_NAME: usize = 64;
pub const MAX_VACATION_SUBJECT: usize = 200;
pub const MAX_VACATION_TEXT: usize = 8000;

/// A decoded form: name/value pairs in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Decode a urlencoded body (`+` is a space, `%XX` a byte; invalid UTF-8 replaced).
    pub fn parse(body: &[u8]) -> Form {
        let pairs = body
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let mut kv = pair.splitn(2, |&b| b == b'=');
                let k = decode(kv.next().unwrap_or_default());
                let v = decode(kv.next().unwrap_or_default());
                (k, v)
            })
            .collect();
        Form(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }
}

fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A form that is not valid: what to tell the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: &str) -> Invalid {
    Invalid(message.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginForm {
    pub address: String,
    pub password: String,
}

impl LoginForm {
    pub fn from_form(form: &Form) -> Result<LoginForm, Invalid> {
        let address = form.text("address").trim().to_string();
        let password = form.text("password").to_string();
        if address.is_empty() || password.is_empty() {
            return Err(invalid("Enter your mail address and password."));
        }
        if address.len() > 320 || password.len() > MAX_PASSWORD {
            return Err(invalid("The mail address or password is too long."));
        }
        Ok(LoginForm { address, password })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordForm {
    pub current: String,
    pub new: String,
}

impl PasswordForm {
    pub fn from_form(form: &Form) -> Result<PasswordForm, Invalid> {
        let (current, new, confirm) = (form.text("current"), form.text("new"), form.text("confirm"));
        if current.is_empty() {
            return Err(invalid("Enter your current password."));
        }
        if new.chars().count() < MIN_PASSWORD {
            return Err(Invalid(format!("The new password must have at least {MIN_PASSWORD} characters.")));
        }
        if new.len() > MAX_PASSWORD || current.len() > MAX_PASSWORD {
            return Err(invalid("The password is too long."));
        }
        if new != confirm {
            return Err(invalid("The new password and its confirmation differ."));
        }
        if new == current {
            return Err(invalid("The new password is the same as the current one."));
        }
        Ok(PasswordForm { current: current.to_string(), new: new.to_string() })
    }
}

/// The name of a new app password (which device or program it is for).
pub fn app_password_name(form: &Form) -> Result<String, Invalid> {
    let name = form.text("name").trim();
    if name.is_empty() {
        return Err(invalid("Give the app password a name, such as the device it is for."));
    }
    if name.chars().count() > MAX_APP_PASSWORD_NAME || name.chars().any(char::is_control) {
        return Err(Invalid(format!(
            "The name must be at most {MAX_APP_PASSWORD_NAME} characters, without control characters."
        )));
    }
    Ok(name.to_string())
}

/// The id of the app password to revoke.
pub fn app_password_id(form: &Form) -> Result<String, Invalid> {
    let id = form.text("id").trim();
    if id.is_empty() || id.len() > 128 {
        return Err(invalid("No app password was chosen."));
    }
    Ok(id.to_string())
}

/// The "require app passwords" switch: a checkbox, present only when ticked.
pub fn required_switch(form: &Form) -> bool {
    form.get("required") == Some("on")
}

/// The vacation form. Dates are `YYYY-MM-DD` (what `<input type=date>` sends).
pub fn vacation(form: &Form) -> Result<Vacation, Invalid> {
    let enabled = form.get("enabled") == Some("on");
    let subject = form.text("subject").trim().to_string();
    let text = form.text("text").replace("\r\n", "\n");
    let date = |name: &str, label: &str| -> Result<Option<NaiveDate>, Invalid> {
        let v = form.text(name).trim();
        if v.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| Invalid(format!("The {label} date must look like 2026-07-31.")))
    };
    let start = date("start", "first")?;
    let end = date("end", "last")?;
    if subject.chars().count() > MAX_VACATION_SUBJECT || subject.chars().any(char::is_control) {
        return Err(Invalid(format!("The subject must be one line of at most {MAX_VACATION_SUBJECT} characters.")));
    }
    if text.chars().count() > MAX_VACATION_TEXT {
        return Err(Invalid(format!("The message must be at most {MAX_VACATION_TEXT} characters.")));
    }
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(invalid("The last day is before the first day."));
    }
    if enabled && text.trim().is_empty() {
        return Err(invalid("Write the message to send while you are away."));
    }
    Ok(Vacation { enabled, subject, text, start, end })
}
