//! What the embedded API server knows about one resource type: enough to route,
//! validate, serve discovery and OpenAPI, and print tables.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    pub json_path: String,
    pub description: Option<String>,
    pub format: Option<String>,
    pub priority: i32,
}

#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    /// Whether `/status` is a separate subresource.
    pub status_subresource: bool,
    /// The CRD's `openAPIV3Schema` for custom resources; None for built-ins.
    pub schema: Option<Value>,
    /// From the CRD's `additionalPrinterColumns`; empty means name + age.
    pub printer_columns: Vec<PrinterColumn>,
    /// Custom resources get generation, schema validation and 415 on strategic merge.
    pub custom: bool,
}

impl ResourceInfo {
    /// "v1" for core, "group/version" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path prefix: "/api/v1" or "/apis/group/version".
    pub fn path_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}
