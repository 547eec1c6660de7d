//! Which page a request is for: a pure function of the method and the path, so the
//! whole map is tested without a socket.

use hyper::Method;

/// A web page and what is being done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Stylesheet,
    CopyScript,
    LoginForm,
    LoginSubmit,
    Logout,
    Home,
    PasswordForm,
    PasswordSubmit,
    AppPasswords,
    AppPasswordCreate,
    AppPasswordRevoke,
    AppPasswordRequire,
    VacationForm,
    VacationSubmit,
    Setup,
    MobileConfig,
    Admin,
    AdminQueue,
    AdminDnsCheck,
    /// A known page, another method.
    MethodNotAllowed,
    NotFound,
}

impl Route {
    /// The page's name in `mailroom_web_render_seconds{page}`: one per route, a bounded set.
    pub fn label(self) -> &'static str {
        match self {
            Route::Stylesheet | Route::CopyScript => "static",
            Route::LoginForm | Route::LoginSubmit => "login",
            Route::Logout => "logout",
            Route::Home => "home",
            Route::PasswordForm | Route::PasswordSubmit => "password",
            Route::AppPasswords | Route::AppPasswordCreate | Route::AppPasswordRevoke | Route::AppPasswordRequire => {
                "app_passwords"
            }
            Route::VacationForm | Route::VacationSubmit => "vacation",
            Route::Setup | Route::MobileConfig => "setup",
            Route::Admin | Route::AdminQueue | Route::AdminDnsCheck => "admin",
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }

    /// Whether the page changes something (and so needs the CSRF token).
    pub fn is_post(self) -> bool {
        matches!(
            self,
            Route::LoginSubmit
                | Route::Logout
                | Route::PasswordSubmit
                | Route::AppPasswordCreate
                | Route::AppPasswordRevoke
                | Route::AppPasswordRequire
                | Route::VacationSubmit
                | Route::AdminQueue
                | Route::AdminDnsCheck
        )
    }
}

/// Whether `path` belongs to the web pages (the rest of port 443 stays with
/// `http::web`).
pub fn is_web_path(path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    under("/account") || under("/admin")
}

/// The route of a request. HEAD is GET without a body (hyper drops it).
pub fn route(method: &Method, path: &str) -> Route {
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let (on_get, on_post) = match path {
        "/account" => (Some(Route::Home), None),
        "/account/login" => (Some(Route::LoginForm), Some(Route::LoginSubmit)),
        "/account/logout" => (None, Some(Route::Logout)),
        "/account/password" => (Some(Route::PasswordForm), Some(Route::PasswordSubmit)),
        "/account/app-passwords" => (Some(Route::AppPasswords), Some(Route::AppPasswordCreate)),
        "/account/app-passwords/revoke" => (None, Some(Route::AppPasswordRevoke)),
        "/account/app-passwords/require" => (None, Some(Route::AppPasswordRequire)),
        "/account/vacation" => (Some(Route::VacationForm), Some(Route::VacationSubmit)),
        "/account/setup" => (Some(Route::Setup), None),
        "/account/setup/mailroom.mobileconfig" => (Some(Route::MobileConfig), None),
        "/admin" => (Some(Route::Admin), None),
        "/admin/queue" => (None, Some(Route::AdminQueue)),
        "/admin/dns" => (None, Some(Route::AdminDnsCheck)),
        p if p == super::html::CSS_PATH.as_str() => (Some(Route::Stylesheet), None),
        p if p == super::html::COPY_JS_PATH.as_str() => (Some(Route::CopyScript), None),
        _ => return Route::NotFound,
    };
    match (get, post) {
        (true, _) => on_get.unwrap_or(Route::MethodNotAllowed),
        (_, true) => on_post.unwrap_or(Route::MethodNotAllowed),
        _ => Route::MethodNotAllowed,
    }
}
