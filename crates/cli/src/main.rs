//! `mcpsec`: the operator tool.
//!
//! Exit codes everywhere: 0 success / allowed / valid; 1 denied / invalid (the input was
//! read fine and the answer is no); 2 usage or input error.

use clap::{Parser, Subcommand, ValueEnum};
use mcpsec_access::{Action, Role, Scope, ScopeSet};
use mcpsec_apikeys::Env;
use mcpsec_cli::access::{self, Owner};
use mcpsec_cli::apikeys::{self, KeyInfo};
use mcpsec_cli::bench;
use mcpsec_cli::mfa;
use mcpsec_cli::tokens::{self, CliError, IssueOptions};
use mcpsec_tokens::{Algorithm, RsaBits};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Operator tool for mcpsec: check access decisions, print the permission matrix,
/// measure performance.
#[derive(Debug, Parser)]
#[command(name = "mcpsec", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Roles, scopes and actions.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Access tokens: issue, verify, inspect.
    #[command(subcommand)]
    Token(TokenCommand),
    /// API keys (`mcp_sk_…`): generate, inspect, hash, verify; peppers.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// TOTP second factors: enroll, print a code, verify a code.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Recovery codes: generate a fresh set.
    #[command(subcommand)]
    Recovery(RecoveryCommand),
    /// Time mcpsec operations against the raw primitives they are built on, like
    /// `openssl speed`.
    Bench {
        /// Print one JSON array of {name, ns_per_op, baseline, baseline_ns_per_op, ratio}.
        #[arg(long)]
        json: bool,
        /// Only rows whose name contains this text.
        #[arg(long, value_name = "NAME")]
        filter: Option<String>,
        /// Measuring time per row, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
        millis: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Decide one action for a role and a credential's scopes. Prints `allow` or
    /// `deny: <rule that failed>` first; exits 0 when allowed, 1 when denied.
    Check {
        /// The principal's role: org_admin, developer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The credential's scopes, space-separated ("mcp:read org:read"); strict parsing.
        #[arg(long, value_parser = parse_scopes, allow_hyphen_values = true)]
        scopes: ScopeSet,
        /// The action (see `mcpsec access matrix`), e.g. mcp.configure.
        #[arg(long, value_parser = parse_action)]
        action: Action,
        /// Whose resource: defaults to the action's natural owner (self for personal
        /// actions, same-org for organization actions).
        #[arg(long, value_enum)]
        owner: Option<OwnerArg>,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the role × action table as Markdown.
    Matrix,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a signing key: writes DIR/KID.pem (PKCS#8, mode 0600) and adds the public
    /// key to DIR/jwks.json, keeping keys already there (a second kid makes a rotation set).
    Generate {
        /// RS256, ES256 or EdDSA.
        #[arg(long, value_parser = parse_alg, default_value = "RS256")]
        alg: Algorithm,
        /// The key id.
        #[arg(long)]
        kid: String,
        /// The directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// RSA modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value = "2048", value_parser = parse_rsa_bits)]
        rsa_bits: RsaBits,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Sign an access token and print it.
    Issue {
        /// PKCS#8 PEM private key file, or - for standard input.
        #[arg(long, value_name = "FILE")]
        key: String,
        /// The key's algorithm (default: detected from the key).
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Algorithm>,
        /// The key id to put in the header.
        #[arg(long)]
        kid: String,
        /// Issuer (`iss`).
        #[arg(long)]
        iss: String,
        /// Audience (`aud`).
        #[arg(long)]
        aud: String,
        /// Subject (`sub`).
        #[arg(long)]
        sub: String,
        /// Organization (`org`).
        #[arg(long)]
        org: Option<String>,
        /// Role (`role`): org_admin, developer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Scopes, space-separated; strict parsing.
        #[arg(long, value_parser = parse_scopes, default_value = "", allow_hyphen_values = true)]
        scope: ScopeSet,
        /// Lifetime, e.g. 15m, 1h, 24h.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        /// Authentication methods (`amr`), e.g. --amr pwd --amr otp.
        #[arg(long)]
        amr: Vec<String>,
    },
    /// Verify a token strictly. Valid: exit 0 and the claims as JSON on stdout. Invalid:
    /// exit 1 and one line naming the reason on stderr.
    Verify {
        /// JWK set file, or its URL (HTTPS; plain HTTP only to loopback).
        #[arg(long, value_name = "FILE|URL")]
        jwks: String,
        /// Expected issuer.
        #[arg(long)]
        iss: String,
        /// Expected audience.
        #[arg(long)]
        aud: String,
        /// A scope the token must grant (through the hierarchy).
        #[arg(long, value_parser = parse_scope)]
        require_scope: Option<Scope>,
        /// The token, or - (the default) for standard input.
        #[arg(default_value = "-")]
        token: String,
    },
    /// Print a token's header and claims WITHOUT verifying anything.
    Inspect {
        /// The token, or - for standard input.
        #[arg(default_value = "-")]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Generate a key and print it on one line (shown once: store only its hash).
    Generate {
        /// The key's environment.
        #[arg(long, value_enum, default_value = "live")]
        env: EnvArg,
        /// Print one JSON object {key, id, env, hint}.
        #[arg(long)]
        json: bool,
    },
    /// Print a key's public parts (env, id, hint), never its secret. Well-formed: exit 0.
    /// Malformed or bad checksum: exit 1 and one line naming the reason on stderr.
    Inspect {
        /// Print one JSON object {env, id, hint}.
        #[arg(long)]
        json: bool,
        /// The key, or - (the default) for standard input (keeps it out of shell history).
        #[arg(default_value = "-")]
        key: String,
    },
    /// Print the stored-hash string of a key (HMAC-SHA256 under the pepper by default).
    Hash {
        /// File holding the pepper as base64 text (at least 32 bytes).
        #[arg(long, value_name = "FILE")]
        pepper_file: PathBuf,
        /// The pepper's version, recorded in the hash.
        #[arg(long, default_value_t = 1)]
        pepper_version: u32,
        /// Argon2id (default parameters) instead of HMAC-SHA256.
        #[arg(long)]
        argon2: bool,
        /// The key, or - (the default) for standard input.
        #[arg(default_value = "-")]
        key: String,
    },
    /// Check a key against a stored hash. Match: `match` on stdout, exit 0. No match:
    /// `no match` on stderr, exit 1 (also for a malformed key, with the reason).
    Verify {
        /// File holding the pepper as base64 text; used with the version the hash names.
        #[arg(long, value_name = "FILE")]
        pepper_file: PathBuf,
        /// The stored-hash string.
        #[arg(long, value_name = "HASH", allow_hyphen_values = true)]
        hash: String,
        /// The key, or - (the default) for standard input.
        #[arg(default_value = "-")]
        key: String,
    },
    /// Write a new random pepper (32 bytes, base64) to a new file with mode 0600.
    NewPepper {
        /// The file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TotpCommand {
    /// Generate a TOTP secret (160 bits; SHA-1, 6 digits, 30 s) and print it once as
    /// `secret: …` and `uri: …` (the otpauth:// URI for authenticator apps).
    Enroll {
        /// The account name shown in the authenticator app (no ':').
        #[arg(long, value_name = "NAME")]
        account: String,
        /// The issuer shown in the authenticator app (no ':').
        #[arg(long, value_name = "NAME")]
        issuer: String,
        /// Render the URI as a QR code (not available in this build: exits 2).
        #[arg(long)]
        qr: bool,
        /// Print one JSON object {secret, uri}.
        #[arg(long)]
        json: bool,
    },
    /// Print the code for now, or for the given time.
    Code {
        /// The base32 secret, or - for standard input (keeps it out of shell history).
        #[arg(long, value_name = "B32")]
        secret: String,
        /// The time, in seconds since the Unix epoch (default: now).
        #[arg(long, value_name = "UNIX_SECONDS", value_parser = parse_unix_seconds)]
        at: Option<u64>,
    },
    /// Check a code within ±1 step (no replay protection). Valid: `valid` on stdout, exit
    /// 0. Wrong or malformed code: exit 1 and one line naming the reason on stderr.
    Verify {
        /// The base32 secret, or - for standard input (keeps it out of shell history).
        #[arg(long, value_name = "B32")]
        secret: String,
        /// The time, in seconds since the Unix epoch (default: now).
        #[arg(long, value_name = "UNIX_SECONDS", value_parser = parse_unix_seconds)]
        at: Option<u64>,
        /// The code to check.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
enum RecoveryCommand {
    /// Print a fresh set of recovery codes (`xxxxx-xxxxx-xxxxx-xxxxx`), one per line.
    Generate {
        /// How many codes: 1 to 10 (a set is 10).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
        count: u8,
        /// Print one JSON array of strings.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EnvArg {
    /// Production keys.
    Live,
    /// Test keys.
    Test,
}

impl From<EnvArg> for Env {
    fn from(arg: EnvArg) -> Env {
        match arg {
            EnvArg::Live => Env::Live,
            EnvArg::Test => Env::Test,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OwnerArg {
    /// The principal's own resource.
    #[value(name = "self")]
    SelfOwned,
    /// A resource of the principal's organization.
    SameOrg,
    /// Another user's resource in the same organization.
    OtherUser,
    /// A resource of another organization.
    OtherOrg,
}

impl From<OwnerArg> for Owner {
    fn from(arg: OwnerArg) -> Owner {
        match arg {
            OwnerArg::SelfOwned => Owner::SelfOwned,
            OwnerArg::SameOrg => Owner::SameOrg,
            OwnerArg::OtherUser => Owner::OtherUser,
            OwnerArg::OtherOrg => Owner::OtherOrg,
        }
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: mcpsec_access::Error| e.to_string())
}

fn parse_action(s: &str) -> Result<Action, String> {
    s.parse().map_err(|e: mcpsec_access::Error| {
        let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        format!("{e}; known actions: {}", names.join(", "))
    })
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    s.parse().map_err(|e: mcpsec_tokens::Error| e.to_string())
}

fn parse_rsa_bits(s: &str) -> Result<RsaBits, String> {
    match s {
        "2048" => Ok(RsaBits::B2048),
        "3072" => Ok(RsaBits::B3072),
        "4096" => Ok(RsaBits::B4096),
        _ => Err("RSA keys are 2048, 3072 or 4096 bits".to_owned()),
    }
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: mcpsec_access::Error| e.to_string())
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if ttl.is_zero() || ttl > std::time::Duration::from_secs(30 * 24 * 3600) {
        return Err("the lifetime must be between 1s and 30 days".to_owned());
    }
    Ok(ttl)
}

fn parse_unix_seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(t) if t <= mfa::MAX_UNIX_SECONDS => Ok(t),
        _ => Err(format!(
            "seconds since the Unix epoch, 0 to {}",
            mfa::MAX_UNIX_SECONDS
        )),
    }
}

fn parse_scopes(s: &str) -> Result<ScopeSet, String> {
    ScopeSet::parse_strict(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help / --version.
    let cli = Cli::parse();
    match cli.command {
        Command::Access(AccessCommand::Check {
            role,
            scopes,
            action,
            owner,
            json,
        }) => {
            let owner = owner.map_or_else(|| Owner::natural_for(action), Owner::from);
            let answer = access::check(role, scopes, action, owner);
            if json {
                match serde_json::to_string(&answer) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return fail(&format!("cannot encode the answer: {e}")),
                }
            } else {
                print!("{}", answer.to_text());
            }
            if answer.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Access(AccessCommand::Matrix) => {
            print!("{}", access::matrix_markdown());
            ExitCode::SUCCESS
        }
        Command::Bench {
            json,
            filter,
            millis,
        } => run_bench(json, filter.as_deref(), Duration::from_millis(millis)),
        Command::Keys(command) => finish(run_keys(command)),
        Command::Token(command) => finish(run_token(command)),
        Command::Apikey(command) => run_apikey(command).unwrap_or_else(|e| finish(Err(e))),
        Command::Totp(command) => finish(run_totp(command)),
        Command::Recovery(command) => finish(run_recovery(command)),
    }
}

fn run_keys(command: KeysCommand) -> Result<(), CliError> {
    let KeysCommand::Generate {
        alg,
        kid,
        out,
        rsa_bits,
        json,
    } = command;
    let generated = tokens::generate(alg, &kid, &out, rsa_bits)?;
    if json {
        println!("{}", serde_json::to_string(&generated).unwrap_or_default());
    } else {
        println!(
            "private key: {} (mode 0600; keep it secret)",
            generated.private_key.display()
        );
        println!("public key added to: {}", generated.jwks.display());
    }
    Ok(())
}

fn run_token(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Issue {
            key,
            alg,
            kid,
            iss,
            aud,
            sub,
            org,
            role,
            scope,
            ttl,
            amr,
        } => {
            let pem = zeroize::Zeroizing::new(tokens::read_input(&key, 16 * 1024)?);
            let token = tokens::issue(&IssueOptions {
                key_pem: &pem,
                alg,
                kid: &kid,
                iss: &iss,
                aud: &aud,
                sub: &sub,
                org: org.as_deref(),
                role,
                scopes: scope,
                ttl,
                amr: &amr,
            })?;
            println!("{token}");
        }
        TokenCommand::Verify {
            jwks,
            iss,
            aud,
            require_scope,
            token,
        } => {
            let token = token_arg(token)?;
            let claims = tokens::verify(&jwks, &iss, &aud, require_scope, &token)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
        }
        TokenCommand::Inspect { token } => {
            let token = token_arg(token)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&tokens::inspect(&token)?).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The `apikey` commands. Errors go through `finish`; `verify` sets its own exit code
/// (`match` on stdout with 0, `no match` on stderr with 1).
fn run_apikey(command: ApikeyCommand) -> Result<ExitCode, CliError> {
    match command {
        ApikeyCommand::Generate { env, json } => {
            let key = apikeys::generate(env.into())?;
            if json {
                apikeys::write_generated_json(&key, &mut std::io::stdout().lock())?;
            } else {
                println!("{}", key.expose_secret());
            }
        }
        ApikeyCommand::Inspect { json, key } => {
            let info = apikeys::inspect(key)?;
            print_key_info(&info, json)?;
        }
        ApikeyCommand::Hash {
            pepper_file,
            pepper_version,
            argon2,
            key,
        } => println!(
            "{}",
            apikeys::hash(key, &pepper_file, pepper_version, argon2)?
        ),
        ApikeyCommand::Verify {
            pepper_file,
            hash,
            key,
        } => {
            if !apikeys::verify(key, &pepper_file, &hash)? {
                eprintln!("no match");
                return Ok(ExitCode::from(1));
            }
            println!("match");
        }
        ApikeyCommand::NewPepper { out } => {
            apikeys::new_pepper(&out)?;
            println!("pepper: {} (mode 0600; keep it secret)", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `totp` commands. Errors go through `finish`: a wrong or malformed code is exit 1,
/// anything else (a bad secret, `--qr`) exit 2.
fn run_totp(command: TotpCommand) -> Result<(), CliError> {
    match command {
        TotpCommand::Enroll {
            account,
            issuer,
            qr,
            json,
        } => {
            if qr {
                return Err(CliError::Usage(mfa::QR_UNAVAILABLE.to_owned()));
            }
            let enrollment = mfa::enroll(&account, &issuer)?;
            let mut out = std::io::stdout().lock();
            if json {
                enrollment.write_json(&mut out)?;
            } else {
                enrollment.write_text(&mut out)?;
            }
        }
        TotpCommand::Code { secret, at } => {
            let secret = mfa::read_secret(secret)?;
            println!("{}", mfa::code(&secret, at)?.expose_secret());
        }
        TotpCommand::Verify { secret, at, code } => {
            let secret = mfa::read_secret(secret)?;
            mfa::verify(&secret, &zeroize::Zeroizing::new(code), at)?;
            println!("valid");
        }
    }
    Ok(())
}

/// The `recovery` commands.
fn run_recovery(command: RecoveryCommand) -> Result<(), CliError> {
    let RecoveryCommand::Generate { count, json } = command;
    let codes = mfa::recovery_codes(usize::from(count))?;
    mfa::write_codes(&codes, json, &mut std::io::stdout().lock())
}

fn print_key_info(info: &KeyInfo, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string(info)
            .map_err(|e| CliError::Usage(format!("cannot encode the answer: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", info.to_text());
    }
    Ok(())
}

/// A token argument is the token itself, or `-` to read it from standard input (so it
/// stays out of shell history).
fn token_arg(arg: String) -> Result<String, CliError> {
    if arg == "-" {
        tokens::read_input("-", 64 * 1024)
    } else {
        Ok(arg)
    }
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(reason)) => {
            eprintln!("invalid: {reason}");
            ExitCode::from(1)
        }
        Err(CliError::Usage(message)) => fail(&message),
    }
}

fn run_bench(json: bool, filter: Option<&str>, budget: Duration) -> ExitCode {
    let mut rows = match bench::rows(filter) {
        Ok(rows) => rows,
        Err(e) => return fail(&format!("cannot set up the benchmarks: {e}")),
    };
    if rows.is_empty() {
        return fail("no benchmark row matches the filter");
    }
    if !json {
        println!(
            "{:<24} {:>12} {:<24} {:>12} {:>8}",
            "name", "ns/op", "baseline", "ns/op", "ratio"
        );
    }
    let mut results = Vec::with_capacity(rows.len());
    for row in &mut rows {
        let m = bench::measure(row, budget);
        if !json {
            println!(
                "{:<24} {:>12.1} {:<24} {:>12.1} {:>8.2}",
                m.name, m.ns_per_op, m.baseline, m.baseline_ns_per_op, m.ratio
            );
        }
        results.push(m);
    }
    if json {
        match serde_json::to_string(&results) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(&format!("cannot encode the results: {e}")),
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
