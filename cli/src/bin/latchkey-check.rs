//! `latchkey-check`: validates latchkey plugin configurations with the filter's own parser and
//! explains what the filter would do for one request. See `--help`.

use std::process::ExitCode;

use latchkey_cli::explain::{explain, Question};
use latchkey_cli::manifest::plugin_configs;
use latchkey_filter::config::Config;

const USAGE: &str = "\
usage: latchkey-check FILE... [--caller SPIFFE_ID --host HOST[:PORT] [--path PATH]]

Checks every plugin configuration in FILE: a JSON or YAML config, or Kubernetes manifests with
WasmPlugin / TrafficExtension resources (their pluginConfig). With --caller and --host, also
explains what the filter does for that request: the binding, the vault calls, the headers.

exit status: 0 all valid, 1 a configuration is refused, 2 usage or file error";

struct Args {
    files: Vec<String>,
    caller: Option<String>,
    host: Option<String>,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        files: Vec::new(),
        caller: None,
        host: None,
        path: "/".to_string(),
    };
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        let mut value = |flag: &str| raw.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--caller" => args.caller = Some(value("--caller")?),
            "--host" => args.host = Some(value("--host")?),
            "--path" => args.path = value("--path")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => args.files.push(arg),
        }
    }
    if args.files.is_empty() {
        return Err("name at least one file".into());
    }
    if args.caller.is_some() != args.host.is_some() {
        return Err("--caller and --host go together".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("latchkey-check: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if problem.is_empty() { 0 } else { 2 });
        }
    };

    let mut refused = false;
    let mut checked = 0;
    for file in &args.files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        let configs = match plugin_configs(&text) {
            Ok(configs) => configs,
            Err(problem) => {
                // Other manifests of a directory are fine; a file that is not YAML is not.
                println!("{file}: skipped: {problem}");
                continue;
            }
        };
        checked += configs.len();
        for found in configs {
            let config = match Config::from_json(found.json.to_string().as_bytes()) {
                Ok(config) => config,
                Err(err) => {
                    println!("{file}: {}: refused: {err}", found.origin);
                    refused = true;
                    continue;
                }
            };
            let bindings = config.bindings.len();
            println!("{file}: {}: ok ({bindings} bindings)", found.origin);
            if let (Some(caller), Some(host)) = (&args.caller, &args.host) {
                let question = Question {
                    caller,
                    authority: host,
                    path: &args.path,
                };
                println!("{}", explain(&config, &question));
            }
        }
    }
    if checked == 0 {
        eprintln!("latchkey-check: no plugin configuration in any file");
        ExitCode::from(2)
    } else if refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
