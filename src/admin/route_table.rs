//! The admin listener's one route table. axum's `Router` cannot list its
//! routes, so every route is added through [`RouteTable::route`], which
//! records the path as well; `tests/openapi.rs` checks that each recorded
//! path (and each method it answers) is in the OpenAPI document, so a route
//! added without a `#[utoipa::path]` annotation fails that test.

use axum::routing::MethodRouter;
use axum::Router;

use crate::state::App;

#[derive(Default)]
pub struct RouteTable {
    router: Router<App>,
    paths: Vec<&'static str>,
    unlisted: Vec<&'static str>,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// A route that belongs in the OpenAPI document.
    pub fn route(mut self, path: &'static str, methods: MethodRouter<App>) -> RouteTable {
        self.router = self.router.route(path, methods);
        self.paths.push(path);
        self
    }

    /// A route that is not part of the JSON API (a web-console page or
    /// asset); `why` is there for the reader of the table.
    pub fn route_unlisted(
        mut self,
        path: &'static str,
        methods: MethodRouter<App>,
        why: &'static str,
    ) -> RouteTable {
        let _ = why;
        self.router = self.router.route(path, methods);
        self.unlisted.push(path);
        self
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: RouteTable) -> RouteTable {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self.unlisted.extend(other.unlisted);
        self
    }

    /// Paths that must be in the OpenAPI document.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    /// Paths left out of it on purpose.
    pub fn unlisted(&self) -> &[&'static str] {
        &self.unlisted
    }

    pub fn into_router(self) -> Router<App> {
        self.router
    }
}
