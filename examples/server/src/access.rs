//! Who may use which route: every route is registered with the least [`Role`] it needs (or
//! none, for the few open ones), and one layer checks it before any handler runs.
//!
//! The routes are added only through [`Routes`], so a route without a rule cannot exist; the
//! table is also public ([`App::route_access`](crate::App::route_access)) for tests and docs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use netauto_core::Role;

use crate::app::AppState;
use crate::auth::resolve;
use crate::pages::layout;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not (login, health, metrics with its own token, assets).
    Open,
    /// A logged-in user with this role or a higher one.
    Least(Role),
}

/// The router being built and the rule of each of its paths.
pub(crate) struct Routes {
    router: Router<AppState>,
    rules: BTreeMap<&'static str, Access>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            rules: BTreeMap::new(),
        }
    }

    /// Adds `path` with the rule `access` (every method of `route` shares it).
    pub(crate) fn at(
        mut self,
        path: &'static str,
        access: Access,
        route: MethodRouter<AppState>,
    ) -> Self {
        let earlier = self.rules.insert(path, access);
        assert!(earlier.is_none(), "route {path} added twice");
        self.router = self.router.route(path, route);
        self
    }

    pub(crate) fn open(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.at(path, Access::Open, route)
    }

    pub(crate) fn viewer(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.at(path, Access::Least(Role::Viewer), route)
    }

    pub(crate) fn operator(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.at(path, Access::Least(Role::Operator), route)
    }

    pub(crate) fn admin(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.at(path, Access::Least(Role::Admin), route)
    }

    /// The rules, by path.
    pub(crate) fn rules(&self) -> Vec<(&'static str, Access)> {
        self.rules.iter().map(|(p, a)| (*p, *a)).collect()
    }

    /// The router with the check in front of every route.
    pub(crate) fn finish(self, state: AppState) -> Router<AppState> {
        let guard = Guard {
            state,
            rules: Arc::new(self.rules),
        };
        self.router
            .route_layer(middleware::from_fn_with_state(guard, authorize))
    }
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    rules: Arc<BTreeMap<&'static str, Access>>,
}

/// Lets a request through when its route is open or its user's role is enough; otherwise
/// `401` (no user: a redirect to `/login` for pages) or `403`.
async fn authorize(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // A matched route always has a rule; anything else is refused (fail closed).
    let access = path
        .as_deref()
        .and_then(|p| guard.rules.get(p).copied())
        .unwrap_or(Access::Least(Role::Admin));
    if let Access::Least(least) = access {
        let user = match resolve(&parts, &guard.state).await {
            Ok(user) => user,
            Err(unauthenticated) => return unauthenticated.into_response(),
        };
        if user.role < least {
            tracing::info!(
                user = %user.name,
                role = %user.role,
                needs = %least,
                path = path.as_deref().unwrap_or("?"),
                "forbidden by role"
            );
            return forbidden(parts.uri.path().starts_with("/api/"), user.role, least);
        }
        parts.extensions.insert(user);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// `403`: a JSON body under `/api/`, a page elsewhere.
pub(crate) fn forbidden(api: bool, role: Role, least: Role) -> Response {
    let message = format!("this needs the {least} role; you are {role}");
    if api {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": "forbidden", "message": message })),
        )
            .into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            layout::error_page(
                "Forbidden",
                &format!("Not allowed: {message}. Ask an admin."),
            ),
        )
            .into_response()
    }
}
