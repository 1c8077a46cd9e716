//! A client for the control API (docs/admin-api.md) over the raw HTTP/1.1 [`Conn`]: one
//! fresh connection per request, JSON bodies decoded with `serde_json`, an optional bearer
//! token. It knows the API only by its wire form, as a harness in another language would.

use super::{Conn, Fixture, Req, Resp, config_at, start_from};
use bitsmock::Config;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        Admin { addr, token: None }
    }

    pub fn with_token(addr: SocketAddr, token: &str) -> Admin {
        Admin {
            addr,
            token: Some(token.to_owned()),
        }
    }

    /// Sends `req` (plus the bearer token, if any) on a new connection.
    pub async fn send(&self, req: Req) -> Resp {
        let req = match &self.token {
            Some(token) => req.header("Authorization", &format!("Bearer {token}")),
            None => req,
        };
        let mut conn = Conn::open(self.addr).await;
        conn.ok(&req).await
    }

    pub async fn get(&self, target: &str) -> Resp {
        self.send(Req::new("GET", target)).await
    }

    /// `method target` with a JSON body.
    pub async fn json(&self, method: &str, target: &str, body: &serde_json::Value) -> Resp {
        self.send(
            Req::new(method, target)
                .header("Content-Type", "application/json")
                .body(body.to_string().into_bytes()),
        )
        .await
    }

    /// `method target` with a text body (`text/plain`).
    pub async fn text(&self, method: &str, target: &str, body: &str) -> Resp {
        self.send(
            Req::new(method, target)
                .header("Content-Type", "text/plain")
                .body(body.as_bytes().to_vec()),
        )
        .await
    }

    /// `GET target`, asserting 200, decoded.
    pub async fn value(&self, target: &str) -> serde_json::Value {
        let resp = self.get(target).await;
        assert_eq!(resp.status, 200, "GET {target}: {}", body_text(&resp));
        json_of(&resp)
    }
}

/// The body as JSON; fails the test when it is not.
#[track_caller]
pub fn json_of(resp: &Resp) -> serde_json::Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", resp.status, body_text(resp)))
}

pub fn body_text(resp: &Resp) -> String {
    String::from_utf8_lossy(&resp.body).into_owned()
}

/// Asserts an error answer: the status, a JSON `{"error": "..."}` body containing `needle`.
#[track_caller]
pub fn assert_api_error(resp: &Resp, status: u16, needle: &str) {
    assert_eq!(resp.status, status, "{}", body_text(resp));
    assert!(
        resp.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{resp:?}"
    );
    let error = json_of(resp)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains(needle), "error {error:?} lacks {needle:?}");
}

/// A server with the control API on a free loopback port, after `adjust`.
pub async fn start_admin(adjust: impl FnOnce(&mut Config)) -> (Fixture, Admin) {
    let fx = start_from(|root| {
        let mut config = config_at(root);
        config.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        adjust(&mut config);
        config
    })
    .await;
    let addr = fx.running.admin_addr().expect("the control API listens");
    let admin = match &fx.running.server.config().admin_token {
        Some(token) => Admin::with_token(addr, token.as_str()),
        None => Admin::new(addr),
    };
    (fx, admin)
}
