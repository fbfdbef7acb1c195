//! Errors in the API's own shape: `{"errors": [...], "message": ...}` with a status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered in the API's own shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub error_code: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error_code: None,
        }
    }

    pub fn code(mut self, code: &str) -> Self {
        self.error_code = Some(code.to_string());
        self
    }

    pub fn body(&self) -> Value {
        let mut error = json!({"message": self.message, "status": self.status});
        if let Some(code) = &self.error_code {
            error["error_code"] = json!(code);
        }
        json!({"errors": [error], "message": self.message})
    }

    /// aiven-go-client retries a 404 matching `Service \S+ does not exist` just after a
    /// create (client.go, isServiceLagError); the code is in the spec's list.
    pub fn service_not_found(name: &str) -> Self {
        Self::new(404, format!("Service {name} does not exist")).code("service_not_found")
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}
