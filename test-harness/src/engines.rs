//! The dynamic secrets engines an end-to-end test can turn on in [`OpenBao`]: the database engine
//! issuing PostgreSQL logins, and identity tokens (short-lived signed JWTs). Each also lets the
//! proxy's token ([`READ_POLICY`]) read what the engine issues.

use std::fmt;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::openbao::{errors, OpenBao, READ_POLICY};
use crate::postgres::Postgres;

/// Mount path of the database secrets engine.
pub const DATABASE_MOUNT: &str = "database";
/// The engine's connection to the test PostgreSQL.
pub const DATABASE_CONNECTION: &str = "pg";
/// The named key that signs identity tokens.
pub const OIDC_KEY: &str = "latchkey";

/// Lease lengths of database logins; tests that need expiry revoke the lease instead of waiting.
const DATABASE_DEFAULT_TTL: &str = "1h";
const DATABASE_MAX_TTL: &str = "24h";
/// Identity tokens are meant to be short-lived bearer tokens.
const IDENTITY_TOKEN_TTL: &str = "5m";
/// ES256 keeps tokens and keys small; OpenBao's default is RS256.
const OIDC_ALGORITHM: &str = "ES256";
const OIDC_ROTATION_PERIOD: &str = "24h";
const OIDC_VERIFICATION_TTL: &str = "24h";

/// `VALID UNTIL` makes PostgreSQL refuse the password once the lease has ended even if the
/// revocation never ran; CONNECT is granted to PUBLIC by default, but a hardened database
/// revokes it there.
const CREATION_STATEMENTS: [&str; 2] = [
    r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#,
    r#"GRANT CONNECT ON DATABASE postgres TO "{{name}}";"#,
];
/// The role holds no other privileges, so revoking CONNECT is all that stands before DROP.
const REVOCATION_STATEMENTS: [&str; 2] = [
    r#"REVOKE ALL ON DATABASE postgres FROM "{{name}}";"#,
    r#"DROP ROLE IF EXISTS "{{name}}";"#,
];

/// A PostgreSQL login issued by the database engine, and its lease. Debug hides the password.
#[derive(Clone)]
pub struct DatabaseCreds {
    pub username: String,
    pub password: String,
    pub lease_id: String,
    /// Seconds.
    pub lease_duration: u64,
}

impl DatabaseCreds {
    /// Reads the body of a `GET database/creds/<role>` answer.
    pub fn from_response(body: &Value) -> Result<DatabaseCreds> {
        let text = |value: &Value, field: &str| {
            value.as_str().map(str::to_string).ok_or_else(|| {
                Error::unexpected("reading database credentials", format!("no {field}"))
            })
        };
        Ok(DatabaseCreds {
            username: text(&body["data"]["username"], "data.username")?,
            password: text(&body["data"]["password"], "data.password")?,
            lease_id: text(&body["lease_id"], "lease_id")?,
            lease_duration: body["lease_duration"].as_u64().ok_or_else(|| {
                Error::unexpected("reading database credentials", "no lease_duration")
            })?,
        })
    }
}

impl fmt::Debug for DatabaseCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCreds")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .finish()
    }
}

impl OpenBao {
    /// Mounts the database engine at [`DATABASE_MOUNT`], connects it to `postgres` as the
    /// superuser and creates each of `roles`: a LOGIN role valid until its lease ends (1 h by
    /// default, 24 h at most), dropped on revocation. The proxy's token may then read
    /// `database/creds/*`. Call again after [`OpenBao::restart`].
    pub fn enable_database(&self, postgres: &Postgres, roles: &[&str]) -> Result<()> {
        self.mount_once(DATABASE_MOUNT, "database")?;

        let url = format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            postgres.port()
        );
        let connection = json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": url,
            "username": postgres.superuser(),
            "password": postgres.superuser_password(),
            "allowed_roles": "*",
        });
        let path = format!("{DATABASE_MOUNT}/config/{DATABASE_CONNECTION}");
        self.api_ok("POST", &path, Some(&connection))?;

        for role in roles {
            let definition = json!({
                "db_name": DATABASE_CONNECTION,
                "creation_statements": CREATION_STATEMENTS,
                "revocation_statements": REVOCATION_STATEMENTS,
                "default_ttl": DATABASE_DEFAULT_TTL,
                "max_ttl": DATABASE_MAX_TTL,
            });
            let path = format!("{DATABASE_MOUNT}/roles/{role}");
            self.api_ok("POST", &path, Some(&definition))?;
        }

        self.grant_proxy_read(&format!("{DATABASE_MOUNT}/creds/*"))
    }

    /// Issues a login for database `role` with the root token.
    pub fn database_creds(&self, role: &str) -> Result<DatabaseCreds> {
        let body = self.api_ok("GET", &format!("{DATABASE_MOUNT}/creds/{role}"), None)?;
        DatabaseCreds::from_response(&body)
    }

    /// Ends a lease now, as its expiry would; for database logins the role is dropped before
    /// this returns.
    pub fn revoke_lease(&self, lease_id: &str) -> Result<()> {
        let body = json!({ "lease_id": lease_id });
        self.api_ok("PUT", "sys/leases/revoke", Some(&body))?;
        Ok(())
    }

    /// Creates the signing key [`OIDC_KEY`] (ES256) and, for each of `roles`, an identity token
    /// role signing with it whose tokens live 5 minutes. The proxy's token may then read
    /// `identity/oidc/token/*`; the root token cannot, as it has no entity.
    pub fn enable_identity_tokens(&self, roles: &[&str]) -> Result<()> {
        let key = json!({
            "algorithm": OIDC_ALGORITHM,
            "allowed_client_ids": ["*"],
            "rotation_period": OIDC_ROTATION_PERIOD,
            "verification_ttl": OIDC_VERIFICATION_TTL,
        });
        self.api_ok("POST", &format!("identity/oidc/key/{OIDC_KEY}"), Some(&key))?;

        for role in roles {
            let definition = json!({ "key": OIDC_KEY, "ttl": IDENTITY_TOKEN_TTL });
            self.api_ok(
                "POST",
                &format!("identity/oidc/role/{role}"),
                Some(&definition),
            )?;
        }

        self.grant_proxy_read("identity/oidc/token/*")
    }

    /// Enables jwt auth at `jwt/` trusting JWT-SVIDs signed by `public_key_pem`, with one role
    /// per `(role, SPIFFE ID)`: the role accepts only that subject with audience `audience`, and
    /// its tokens carry the read policy. Vault policy then applies per workload.
    pub fn enable_jwt_auth(
        &self,
        public_key_pem: &str,
        audience: &str,
        roles: &[(&str, &str)],
    ) -> Result<()> {
        self.api_ok("POST", "sys/auth/jwt", Some(&json!({ "type": "jwt" })))?;
        let config = json!({ "jwt_validation_pubkeys": [public_key_pem] });
        self.api_ok("POST", "auth/jwt/config", Some(&config))?;
        for (role, subject) in roles {
            let definition = json!({
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_subject": subject,
                "bound_audiences": [audience],
                "token_policies": [READ_POLICY],
                "token_ttl": "1h",
            });
            self.api_ok("POST", &format!("auth/jwt/role/{role}"), Some(&definition))?;
        }
        Ok(())
    }

    /// The JSON Web Key Set that verifies identity tokens, fetched without a token as a
    /// relying party would.
    pub fn oidc_keys(&self) -> Result<Value> {
        self.unauthenticated_get("identity/oidc/.well-known/keys")
    }

    /// The `iss` of identity tokens, from the unauthenticated discovery document.
    pub fn oidc_issuer(&self) -> Result<String> {
        let discovery =
            self.unauthenticated_get("identity/oidc/.well-known/openid-configuration")?;
        discovery["issuer"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::unexpected("reading the OIDC discovery document", "no issuer"))
    }

    /// The `aud` of identity tokens of `role`: the client ID OpenBao generated for it.
    pub fn oidc_audience(&self, role: &str) -> Result<String> {
        let body = self.api_ok("GET", &format!("identity/oidc/role/{role}"), None)?;
        body["data"]["client_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::unexpected(
                    format!("reading identity token role {role}"),
                    "no client_id",
                )
            })
    }

    fn mount_once(&self, path: &str, engine: &str) -> Result<()> {
        let mounts = self.api_ok("GET", "sys/mounts", None)?;
        if mounts["data"][format!("{path}/")]["type"] == engine {
            return Ok(());
        }
        let body = json!({ "type": engine });
        self.api_ok("POST", &format!("sys/mounts/{path}"), Some(&body))?;
        Ok(())
    }

    /// Adds read on `path` to [`READ_POLICY`], keeping what it already grants.
    fn grant_proxy_read(&self, path: &str) -> Result<()> {
        let policy_path = format!("sys/policies/acl/{READ_POLICY}");
        let current = self.api_ok("GET", &policy_path, None)?;
        let mut policy = current["data"]["policy"].as_str().unwrap_or("").to_string();

        let rule = format!(r#"path "{path}" {{ capabilities = ["read"] }}"#);
        if policy.contains(&rule) {
            return Ok(());
        }
        policy.push('\n');
        policy.push_str(&rule);
        self.api_ok("PUT", &policy_path, Some(&json!({ "policy": policy })))?;
        Ok(())
    }

    fn unauthenticated_get(&self, path: &str) -> Result<Value> {
        let response = self.call(None, "GET", path, None)?;
        if response.status != 200 {
            return Err(Error::unexpected(
                format!("OpenBao GET /v1/{path}"),
                format!(
                    "status {}: {}",
                    response.status,
                    errors(&response.body).join("; ")
                ),
            ));
        }
        Ok(response.body)
    }
}
