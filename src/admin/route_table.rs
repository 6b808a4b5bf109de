//! The list of routes the admin router is built from, so tests can walk
//! every route (issue 11: "read token 403 on every mutating route,
//! iterate the router"). axum's `Router` cannot list its routes; this
//! wrapper records each path as it is added and hands the methods to
//! axum unchanged. A route's methods are found at run time from the
//! `Allow` header of a 405 (see `tests/admin_auth.rs`).

use axum::routing::MethodRouter;
use axum::Router;

use crate::state::App;

pub struct RouteTable {
    router: Router<App>,
    paths: Vec<&'static str>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new()
    }
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    /// Same as `Router::route`, recording `path`.
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<App>) -> RouteTable {
        self.paths.push(path);
        self.router = self.router.route(path, method_router);
        self
    }

    /// Every path added, in order.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn into_router(self) -> Router<App> {
        self.router
    }
}
