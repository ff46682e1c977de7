//! Native tools around the latchkey filter, sharing its own config and binding code:
//! `latchkey-check` validates plugin configurations and explains a decision, `latchkey-oci`
//! packs the module as an OCI image that Istio can pull.

pub mod explain;
pub mod manifest;
pub mod oci;
