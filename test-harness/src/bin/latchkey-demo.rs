//! `make demo`: a workload that holds no secret calls an API through Envoy, and latchkey injects
//! the credential OpenBao keeps for the workload's SPIFFE ID. Everything is real and local.

use std::process::ExitCode;

use latchkey_test_harness::scenario::{Gateway, API_HOST, SECRET_PATH};
use latchkey_test_harness::{Error, Response, CERT_ROLE, PROXY_SPIFFE_ID, WORKLOAD_SPIFFE_ID};

const APP_HEADERS: [(&str, &str); 2] = [
    (
        "authorization",
        "Bearer stale-token-the-app-should-not-have",
    ),
    ("x-request-id", "demo-1"),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    println!("Starting OpenBao, an echo upstream and Envoy with latchkey on 127.0.0.1 ...");
    let gateway = Gateway::start("demo")?;
    println!("  OpenBao: cert auth role {CERT_ROLE} accepts only {PROXY_SPIFFE_ID}");
    println!(
        "  OpenBao: KV v2 secret/{SECRET_PATH} holds api_key = {}",
        gateway.api_key
    );
    println!(
        "  Envoy:   mTLS listener on port {}",
        gateway.envoy.listener_port()
    );

    println!("\nThe app {WORKLOAD_SPIFFE_ID} sends, holding no vault secret:");
    println!("  GET /v1/charge  host: {API_HOST}");
    for (name, value) in APP_HEADERS {
        println!("  {name}: {value}");
    }
    let app = gateway.checkout()?;
    let response = gateway.call_api(&app, "/v1/charge", &APP_HEADERS)?;
    let echoed = expect_ok(&response)?.echoed()?;
    println!("\nThe upstream API received:");
    println!("  {} {}", echoed.method, echoed.path);
    for (name, value) in &echoed.headers {
        println!("  {name}: {value}");
    }
    let expected = format!("Bearer {}", gateway.api_key);
    if echoed.header_values("authorization") != [expected] {
        return Err(Error::unexpected(
            "checking the injected header",
            "not the vault secret",
        ));
    }
    println!("  -> the stale Authorization is gone; the vault secret was injected");

    let calls = gateway.wait_for_vault_calls(2)?;
    expect_ok(&gateway.call_api(&app, "/v1/charge", &APP_HEADERS)?)?;
    println!(
        "\nA second request: vault calls {calls} -> {} (served from the shared cache)",
        gateway.vault_calls()?
    );

    let anonymous = gateway.client(None)?;
    let refused = gateway.call_api(&anonymous, "/v1/charge", &[])?;
    println!(
        "A request without a client certificate: {} {}",
        refused.status, refused.body
    );

    println!("\nStopping Envoy, the echo upstream and OpenBao.");
    Ok(())
}

fn expect_ok(response: &Response) -> Result<&Response, Error> {
    if response.status == 200 {
        Ok(response)
    } else {
        let detail = format!("status {}: {}", response.status, response.body);
        Err(Error::unexpected(
            "calling the API through the gateway",
            detail,
        ))
    }
}
