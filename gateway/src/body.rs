//! Reading protocol parameters from request bodies: JSON objects, the
//! form-encoded variant the reference client sends, or a bare token.

use crate::error::ApiError;
use actix_web::http::header;
use actix_web::HttpRequest;

/// String parameters of a request body.
#[derive(Debug, Default)]
pub struct Params {
    fields: Vec<(String, String)>,
    raw: Option<String>,
}

impl Params {
    /// Parses `body` by its `Content-Type`: JSON object (string values),
    /// `application/x-www-form-urlencoded`, or anything else as raw text.
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Params, ApiError> {
        let ctype = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("bad_body", "request body is not UTF-8"))?;
        if ctype.starts_with("application/x-www-form-urlencoded") {
            let fields = url::form_urlencoded::parse(body).into_owned().collect();
            return Ok(Params { fields, raw: None });
        }
        let trimmed = text.trim_start();
        if ctype.starts_with("application/json") || trimmed.starts_with('{') {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) {
                // A JSON object with protocol fields, or the token itself.
                let is_params =
                    map.keys().all(|k| matches!(k.as_str(), "grant" | "bind")) && !map.is_empty();
                if is_params {
                    let mut fields = Vec::new();
                    for (k, v) in map {
                        match v {
                            serde_json::Value::String(s) => fields.push((k, s)),
                            serde_json::Value::Null => {}
                            _ => {
                                return Err(ApiError::bad_request(
                                    "bad_parameter",
                                    format!("parameter '{k}' must be a token string"),
                                ))
                            }
                        }
                    }
                    return Ok(Params { fields, raw: None });
                }
            }
        }
        Ok(Params {
            fields: Vec::new(),
            raw: Some(text.to_owned()),
        })
    }

    /// A named parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A named parameter, or the raw body when the body was a bare token.
    pub fn get_or_raw(&self, name: &str) -> Option<&str> {
        self.get(name)
            .or(self.raw.as_deref().filter(|r| !r.trim().is_empty()))
    }

    /// [`Params::get_or_raw`], or a `missing_parameter` error.
    pub fn require_or_raw(&self, name: &str) -> Result<&str, ApiError> {
        self.get_or_raw(name).ok_or_else(|| missing(name))
    }

    /// A required named parameter.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> ApiError {
    ApiError::bad_request("missing_parameter", format!("missing parameter '{name}'"))
}
