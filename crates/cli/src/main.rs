//! `mcpsec`: the operator tool.
//!
//! Exit codes everywhere: 0 success / allowed / valid; 1 denied / invalid (the input was
//! read fine and the answer is no); 2 usage or input error.

use clap::{Parser, Subcommand, ValueEnum};
use mcpsec_access::{Action, Role, Scope, ScopeSet};
use mcpsec_apikeys::Env;
use mcpsec_cli::access::{self, Owner};
use mcpsec_cli::apikeys::{self, KeyInfo};
use mcpsec_cli::audit;
use mcpsec_cli::db;
use mcpsec_cli::mfa;
use mcpsec_cli::stored_keys;
use mcpsec_cli::tokens::{self, CliError, IssueOptions};
use mcpsec_tokens::{Algorithm, RsaBits};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// API keys (`mcp_sk_…`): generate, inspect, hash, verify; peppers; create, list and
    /// revoke keys stored in the SQL database.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// TOTP second factors: enroll, print a code, verify a code.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Recovery codes: generate a fresh set.
    #[command(subcommand)]
    Recovery(RecoveryCommand),
    /// The tamper-evident audit log: append, verify, tail, export; checkpoint keys.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Field encryption: keysets, encrypt, decrypt, rotate, re-encrypt a table, inspect
    /// ciphertexts.
    #[command(subcommand)]
    Crypt(CryptCommand),
    /// The SQL database (SQLite or PostgreSQL) the stores live in: migrations.
    #[command(subcommand)]
    Db(DbCommand),
    /// Users and their role in an organization, in the SQL database.
    #[command(subcommand)]
    User(UserCommand),
    /// Time mcpsec operations against the raw primitives they are built on, like
    /// `openssl speed`.
    #[cfg(feature = "bench")]
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
        /// The key's environment. Services accept live keys only unless built with
        /// `allow_test_keys()`.
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
    /// Create a key for a member of an organization and store its hash in the database.
    /// The key is printed once on stdout (one line); store it now.
    Create {
        /// SQLite path, sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// The key's owner: a member of --org (see `mcpsec user add`).
        #[arg(long, value_name = "USER")]
        owner: String,
        /// The owner's organization.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// Scopes, space-separated ("mcp:read org:read"); strict parsing.
        #[arg(long, value_parser = parse_scopes, allow_hyphen_values = true)]
        scopes: ScopeSet,
        /// The key's name (letters, digits, `.`, `_`, `-`).
        #[arg(long, value_name = "N", default_value = "cli")]
        name: String,
        /// Lifetime from now, e.g. 90d, 12h (default: never expires).
        #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
        expires: Option<std::time::Duration>,
        /// The key's environment.
        #[arg(long, value_enum, default_value = "live")]
        env: EnvArg,
        /// File holding the pepper as base64 text (default: the file named by
        /// MCPSEC_APIKEY_PEPPER_FILE).
        #[arg(long, value_name = "FILE")]
        pepper_file: Option<PathBuf>,
        /// The pepper's version, recorded in the hash.
        #[arg(long, default_value_t = 1)]
        pepper_version: u32,
        /// Print one JSON object {key, id, env, hint, owner, org, name, scopes, expires_at}.
        #[arg(long)]
        json: bool,
    },
    /// List a user's keys: id, organization, name, hint, status, created, expires, scopes.
    /// Never a key or its hash.
    List {
        /// SQLite path, sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// Whose keys.
        #[arg(long, value_name = "USER")]
        owner: String,
        /// Only this organization's (default: every organization holding one).
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        /// Print one JSON array of {id, org, name, hint, env, scopes, status, created_at,
        /// expires_at, last_used_at}.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key for good, by its id (`mcpsec apikey list` shows it).
    Revoke {
        /// SQLite path, sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// The key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or update the schema (idempotent); prints each migration applied.
    Migrate {
        /// SQLite path (created if missing), sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Make NAME a member of ORG with ROLE, creating the organization and the user when
    /// new, or change their role: the operator's bootstrap.
    Add {
        /// SQLite path, sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// The organization.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// org_admin, developer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The user id.
        name: String,
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
        /// Also print the URI as a QR code in the terminal (it contains the secret).
        #[arg(long, conflicts_with = "json")]
        qr: bool,
        /// Also write the URI as a QR code PNG to a new file with mode 0600 (never
        /// overwritten; it contains the secret).
        #[arg(long, value_name = "FILE")]
        qr_png: Option<PathBuf>,
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
    /// Production keys (`mcp_sk_live_`).
    Live,
    /// Test keys (`mcp_sk_test_`), for a development service.
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

fn parse_expiry(s: &str) -> Result<std::time::Duration, String> {
    let lifetime = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if lifetime.is_zero() {
        return Err("the lifetime must be positive".to_owned());
    }
    Ok(lifetime)
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
    // clap exits with 2 on usage errors and 0 for --help / --version; `crypt decrypt`
    // promises exit 1 for every failure, its argument errors included.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let args: Vec<String> = std::env::args().skip(1).take(2).collect();
            let decrypting = args.iter().map(String::as_str).eq(["crypt", "decrypt"]);
            if decrypting && error.use_stderr() {
                let _ = error.print();
                return ExitCode::from(1);
            }
            error.exit()
        }
    };
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
        #[cfg(feature = "bench")]
        Command::Bench {
            json,
            filter,
            millis,
        } => run_bench(
            json,
            filter.as_deref(),
            std::time::Duration::from_millis(millis),
        ),
        Command::Keys(command) => finish(run_keys(command)),
        Command::Token(command) => finish(run_token(command)),
        Command::Apikey(command) => run_apikey(command).unwrap_or_else(|e| finish(Err(e))),
        Command::Totp(command) => finish(run_totp(command)),
        Command::Recovery(command) => finish(run_recovery(command)),
        Command::Audit(command) => finish(run_audit(command)),
        Command::Crypt(command) => finish(run_crypt(command)),
        Command::Db(command) => finish(run_db(command)),
        Command::User(command) => finish(run_user(command)),
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
        ApikeyCommand::Create {
            database_url,
            owner,
            org,
            scopes,
            name,
            expires,
            env,
            pepper_file,
            pepper_version,
            json,
        } => {
            let request = stored_keys::CreateRequest {
                database_url: database_url.clone(),
                owner,
                org,
                scopes,
                name,
                env: env.into(),
                expires,
                pepper_file: stored_keys::pepper_path(pepper_file)?,
                pepper_version,
            };
            let (key, record) = stored_keys::create(&request)?;
            let printed =
                stored_keys::write_created(&key, &record, json, &mut std::io::stdout().lock());
            if let Err(error) = printed {
                // Nobody saw the key: revoke it so no live key lingers that no one holds.
                let revoked = stored_keys::revoke(&database_url, record.id.as_str()).is_ok();
                return Err(CliError::Usage(format!(
                    "{}; key {} {}",
                    match error {
                        CliError::Usage(m) | CliError::Invalid(m) => m,
                    },
                    record.id,
                    if revoked {
                        "revoked"
                    } else {
                        "NOT revoked: revoke it with `mcpsec apikey revoke`"
                    }
                )));
            }
            eprintln!(
                "created API key {} (…{}) for {} in {}; it is shown once: store it now",
                record.id, record.hint, record.owner, record.org
            );
        }
        ApikeyCommand::List {
            database_url,
            owner,
            org,
            json,
        } => {
            let keys = stored_keys::list(&database_url, &owner, org.as_deref())?;
            stored_keys::write_list(&keys, json, &mut std::io::stdout().lock())?;
        }
        ApikeyCommand::Revoke { database_url, id } => {
            let revoked = stored_keys::revoke(&database_url, &id)?;
            let id = id.trim();
            let whose = revoked
                .owner
                .map(|(owner, org)| format!(" (owner {owner}, org {org})"))
                .unwrap_or_default();
            if revoked.already {
                write_out(&format!("{id} was already revoked{whose}\n"))?;
            } else {
                write_out(&format!("revoked {id}{whose}\n"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `totp` commands. Errors go through `finish`: a wrong or malformed code is exit 1,
/// anything else (a bad secret, an existing `--qr-png` file) exit 2.
fn run_totp(command: TotpCommand) -> Result<(), CliError> {
    match command {
        TotpCommand::Enroll {
            account,
            issuer,
            qr,
            qr_png,
            json,
        } => {
            let enrollment = mfa::enroll(&account, &issuer)?;
            // The file first: if it cannot be written, no secret is printed.
            if let Some(path) = &qr_png {
                enrollment.write_qr_png(path)?;
            }
            let printed = mfa::print_enrollment(&enrollment, json, qr, &mut std::io::stdout());
            // The secret was not (fully) shown: remove the PNG so no orphan copy remains.
            if printed.is_err()
                && let Some(path) = &qr_png
            {
                let _ = std::fs::remove_file(path);
            }
            printed?;
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

#[derive(Debug, Subcommand)]
enum CryptCommand {
    /// Write a new keyset file (mode 0600) with version 1 of each category, its keys
    /// wrapped by the master key. Never overwrites.
    Keygen {
        /// The keyset file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A data category (repeatable); default: oauth_tokens, totp_secrets, pii.
        #[arg(long = "category", value_name = "NAME")]
        categories: Vec<String>,
        /// Read the master key (base64 of 32 bytes) from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Encrypt standard input (taken byte for byte) and print the text form.
    Encrypt {
        /// The keyset file.
        #[arg(long, value_name = "FILE")]
        keyset: PathBuf,
        /// The data category whose keyring encrypts.
        #[arg(long, value_name = "NAME")]
        category: String,
        /// Where the value is stored: table=T,column=C,row=R[,tenant=X].
        #[arg(long)]
        context: String,
        /// Read the master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Decrypt the text form read on standard input and write the plaintext. Any failure
    /// exits 1 with a reason and writes nothing.
    Decrypt {
        /// The keyset file.
        #[arg(long, value_name = "FILE")]
        keyset: PathBuf,
        /// Where the value was stored: table=T,column=C,row=R[,tenant=X].
        #[arg(long)]
        context: String,
        /// Read the master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Add a new key version to a category and make it primary.
    Rotate {
        /// The keyset file.
        #[arg(long, value_name = "FILE")]
        keyset: PathBuf,
        /// The data category.
        #[arg(long, value_name = "NAME")]
        category: String,
        /// Read the master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Re-encrypt one column of a table under its category's primary key (after a
    /// rotation), in batches with a checkpoint in the database: an interrupted run
    /// continues where it stopped, and a run after a finished one scans again (it
    /// rewrites nothing once every row is current). Prints one summary line; exits 1 if
    /// some rows could not be opened. The database must be migrated (`db migrate`).
    Rewrap {
        /// SQLite path, sqlite: URL, or postgres:// URL.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// The keyset file.
        #[arg(long, value_name = "FILE")]
        keyset: PathBuf,
        /// The data category the column was sealed under.
        #[arg(long, value_name = "NAME")]
        category: String,
        /// The table (a plain identifier: letters, digits, _).
        #[arg(long, value_name = "T")]
        table: String,
        /// The column holding the ciphertexts (text form or binary).
        #[arg(long, value_name = "C")]
        column: String,
        /// The table's unique id column (integer, text or uuid): the context's row.
        #[arg(long, value_name = "ID")]
        id_column: String,
        /// The column holding the context's tenant, if the values were sealed with one.
        #[arg(long, value_name = "COL")]
        tenant_column: Option<String>,
        /// Rows per batch; a checkpoint is saved after each.
        #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
        /// Stop after N batches (to spread the work); the next run continues.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_batches: Option<u32>,
        /// Read the master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Re-wrap every key of the keyset under a new master key (after a suspected leak of
    /// the old one, or on schedule). Data keys and stored ciphertexts do not change.
    Rekey {
        /// The keyset file.
        #[arg(long, value_name = "FILE")]
        keyset: PathBuf,
        /// The new master key (base64 of 32 bytes), not in the keyset's directory.
        #[arg(long, value_name = "FILE")]
        new_master_key_file: PathBuf,
        /// Read the current master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Read a ciphertext on standard input and print its format version, category and key
    /// version, without decrypting (like every `crypt` command, it requires the master key).
    Info {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Read the master key from FILE instead of MCPSEC_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
}

/// The `crypt` commands.
fn run_crypt(command: CryptCommand) -> Result<(), CliError> {
    use mcpsec_cli::crypt;
    match command {
        CryptCommand::Keygen {
            out,
            categories,
            master_key_file,
        } => {
            let info = crypt::keygen(&out, &categories, master_key_file.as_deref())?;
            println!("keyset: {} (mode 0600)", out.display());
            for category in info {
                println!(
                    "{}: version {} is primary",
                    category.category, category.primary
                );
            }
        }
        CryptCommand::Encrypt {
            keyset,
            category,
            context,
            master_key_file,
        } => {
            let plaintext = crypt::read_stdin(mcpsec_fieldcrypt::format::MAX_PLAINTEXT)?;
            let text = crypt::encrypt(
                &keyset,
                master_key_file.as_deref(),
                &category,
                &context,
                &plaintext,
            )?;
            println!("{text}");
        }
        CryptCommand::Decrypt {
            keyset,
            context,
            master_key_file,
        } => {
            let input =
                crypt::read_stdin(mcpsec_fieldcrypt::format::MAX_TEXT).map_err(|e| match e {
                    CliError::Usage(reason) | CliError::Invalid(reason) => {
                        CliError::Invalid(reason)
                    }
                })?;
            let plaintext = crypt::decrypt(&keyset, master_key_file.as_deref(), &context, &input)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), plaintext.expose_secret())
                .map_err(|e| CliError::Invalid(format!("writing the plaintext: {e}")))?;
        }
        CryptCommand::Rotate {
            keyset,
            category,
            master_key_file,
        } => {
            let version = crypt::rotate(&keyset, master_key_file.as_deref(), &category)?;
            println!("{category}: version {version} is primary");
        }
        CryptCommand::Rewrap {
            database_url,
            keyset,
            category,
            table,
            column,
            id_column,
            tenant_column,
            batch,
            max_batches,
            master_key_file,
        } => {
            use mcpsec_cli::rewrap::{self, Identifier, Target};
            let target = Target {
                table: Identifier::parse("--table", &table)?,
                column: Identifier::parse("--column", &column)?,
                id_column: Identifier::parse("--id-column", &id_column)?,
                tenant_column: tenant_column
                    .as_deref()
                    .map(|t| Identifier::parse("--tenant-column", t))
                    .transpose()?,
            };
            let summary = rewrap::run(&rewrap::Options {
                database_url: &database_url,
                keyset: &keyset,
                master_key_file: master_key_file.as_deref(),
                category: &category,
                target,
                batch: usize::try_from(batch).unwrap_or(500),
                max_batches: max_batches.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            })?;
            write_out(&format!("{}\n", summary.line()))?;
            if summary.progress.failed > 0 {
                return Err(CliError::Invalid(format!(
                    "{} rows could not be opened (wrong context, tampered, or a retired key); \
                     they were left as they are",
                    summary.progress.failed
                )));
            }
        }
        CryptCommand::Rekey {
            keyset,
            new_master_key_file,
            master_key_file,
        } => {
            let id = crypt::rekey(&keyset, master_key_file.as_deref(), &new_master_key_file)?;
            println!("keyset: every key re-wrapped under {id}");
        }
        CryptCommand::Info {
            json,
            master_key_file,
        } => {
            crypt::require_master_key(master_key_file.as_deref())?;
            let input = crypt::read_stdin(mcpsec_fieldcrypt::format::MAX_TEXT)?;
            let header = crypt::info(&input)?;
            crypt::write_info(&header, json, &mut std::io::stdout().lock())?;
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Append events read as JSON lines from standard input (the schema of
    /// docs/audit-events.md). A bad line (unknown field or kind) is an error naming it,
    /// and then nothing is appended.
    Append {
        /// The log file (created if missing).
        #[arg(long, value_name = "FILE")]
        log: PathBuf,
        /// The chain these records join (one chain per writer).
        #[arg(long, default_value = "mcpsec-cli")]
        instance: String,
        /// Sign a checkpoint after the batch with this private key (from `audit keygen`).
        /// The log's last checkpoint must be signed with it (else exit 1).
        #[arg(long, value_name = "KEY")]
        checkpoint_key: Option<PathBuf>,
        /// During a key rotation: the previous key's public file, whose checkpoints the
        /// log may still end on. Repeatable; needs --checkpoint-key.
        #[arg(long, value_name = "PUBKEY")]
        previous_checkpoint_key: Vec<PathBuf>,
        /// Replace source addresses by keyed pseudonyms; FILE holds the key as hex
        /// (at least 64 digits: `openssl rand -hex 32`).
        #[arg(long, value_name = "FILE")]
        pseudonym_key: Option<PathBuf>,
    },
    /// Verify the chain. Intact and signed: `ok: N records, head <hash>`, exit 0.
    /// Otherwise exit 1 with the first bad record's line number and the reason; without
    /// a checkpoint key, exit 1 (chain unauthenticated) unless --allow-unsigned.
    Verify {
        /// The log file.
        file: PathBuf,
        /// Checkpoint public key (from `audit keygen`); repeat for a rotation. With it,
        /// every checkpoint and prune record must be validly signed, and every record
        /// covered by one (see --allow-unsigned-tail).
        #[arg(long, value_name = "PUBKEY")]
        checkpoint_key: Vec<PathBuf>,
        /// Without a checkpoint key, accept a chain checked only for self-consistency
        /// (exit 0; the ok line says `unauthenticated`). Anyone able to write the file can
        /// forge such a chain.
        #[arg(long)]
        allow_unsigned: bool,
        /// With a key, accept records after a chain's last checkpoint (a live log); the
        /// ok line names them.
        #[arg(long)]
        allow_unsigned_tail: bool,
        /// Checkpoints mirrored elsewhere (JSON lines): the log must contain each one,
        /// which detects truncation.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Print the last records, human-readable.
    Tail {
        /// The log file.
        file: PathBuf,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing records as they are appended.
        #[arg(long)]
        follow: bool,
    },
    /// Print each event as one JSON object in OCSF or ECS.
    Export {
        /// The log file.
        file: PathBuf,
        /// ocsf or ecs.
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
    /// Generate the Ed25519 checkpoint key pair: DIR/checkpoint.key (mode 0600) and
    /// DIR/checkpoint.pub. Never overwrites.
    Keygen {
        /// The directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Measure group commit: durable events/s and p50/p99 commit latency with concurrent
    /// writers, and buffered events/s.
    #[cfg(feature = "bench")]
    BenchCommit {
        /// Concurrent writers of critical events.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
        tasks: u16,
        /// Measuring time per part, in milliseconds.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
        millis: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// OCSF 1.3: Authentication (3002) and API Activity (6003).
    Ocsf,
    /// Elastic Common Schema field names.
    Ecs,
}

/// The `audit` commands: a refused batch or an unreadable file is exit 2; a log that does
/// not verify is exit 1.
fn run_audit(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Append {
            log,
            instance,
            checkpoint_key,
            previous_checkpoint_key,
            pseudonym_key,
        } => {
            let events = audit::read_events(std::io::stdin().lock())?;
            let (count, head) = audit::append_rotated(
                &log,
                &instance,
                events,
                checkpoint_key.as_deref(),
                pseudonym_key.as_deref(),
                &previous_checkpoint_key,
            )?;
            println!("appended {count} records, head {head}");
        }
        AuditCommand::Verify {
            file,
            checkpoint_key,
            checkpoints,
            allow_unsigned,
            allow_unsigned_tail,
        } => {
            let allow = audit::VerifyAllow {
                unsigned: allow_unsigned,
                unsigned_tail: allow_unsigned_tail,
            };
            println!(
                "{}",
                audit::verify_allowing(&file, &checkpoint_key, checkpoints.as_deref(), allow)?
            );
        }
        AuditCommand::Tail {
            file,
            lines,
            follow,
        } => {
            let mut out = std::io::stdout().lock();
            let offset = audit::tail(&file, lines, &mut out)?;
            if follow {
                audit::follow(&file, offset, &mut out)?;
            }
        }
        AuditCommand::Export { file, format } => {
            let format = match format {
                ExportFormat::Ocsf => audit::Format::Ocsf,
                ExportFormat::Ecs => audit::Format::Ecs,
            };
            audit::export(&file, format, &mut std::io::stdout().lock())?;
        }
        AuditCommand::Keygen { out } => {
            let files = audit::keygen(&out)?;
            println!(
                "private key: {} (mode 0600; keep it away from the log host)",
                files.private_key.display()
            );
            println!("public key: {}", files.public_key.display());
            println!("fingerprint: {}", files.fingerprint);
        }
        #[cfg(feature = "bench")]
        AuditCommand::BenchCommit { tasks, millis } => {
            let m = mcpsec_bench::audit::commit(
                usize::from(tasks),
                std::time::Duration::from_millis(millis),
            )
            .map_err(|e| CliError::Usage(e.to_string()))?;
            println!(
                "durable: {:.0} events/s with {} writers, commit latency p50 {:.3} ms, p99 {:.3} ms",
                m.durable_per_second, m.tasks, m.p50_ms, m.p99_ms
            );
            println!(
                "baseline: raw write + fdatasync latency p50 {:.3} ms, p99 {:.3} ms",
                m.raw_p50_ms, m.raw_p99_ms
            );
            println!(
                "buffered: {:.0} events/s from one writer",
                m.buffered_per_second
            );
        }
    }
    Ok(())
}

/// The `db` commands.
fn run_db(command: DbCommand) -> Result<(), CliError> {
    let DbCommand::Migrate { database_url } = command;
    let url = db::DatabaseUrl::parse(&database_url)?;
    let report =
        db::runtime()?.block_on(async { db::Database::open(&url, true).await?.migrate().await })?;
    write_out(&report.to_text())
}

/// Writes `text` to standard output; a closed pipe is an error, not a panic.
fn write_out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Usage(format!("cannot write the answer: {e}")))
}

/// The `user` commands.
fn run_user(command: UserCommand) -> Result<(), CliError> {
    let UserCommand::Add {
        database_url,
        org,
        role,
        name,
    } = command;
    let url = db::DatabaseUrl::parse(&database_url)?;
    let user = db::user_id("NAME", &name)?;
    let org = db::org_id("--org", &org)?;
    db::runtime()?.block_on(async {
        db::Database::open(&url, false)
            .await?
            .add_user(&user, &org, role)
            .await
    })?;
    write_out(&format!("user {user}: {} in {org}\n", role.as_str()))
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

#[cfg(feature = "bench")]
fn run_bench(json: bool, filter: Option<&str>, budget: std::time::Duration) -> ExitCode {
    // Once, on stderr (stdout stays the table or the JSON): the store.pg_* rows need a
    // database URL.
    if let Some(notice) = mcpsec_bench::pg_skip_notice(filter) {
        eprintln!("{notice}");
    }
    let mut rows = match mcpsec_bench::rows(filter) {
        Ok(rows) => rows,
        Err(e) => return fail(&format!("cannot set up the benchmarks: {e}")),
    };
    if rows.is_empty() {
        return fail("no benchmark row matches the filter");
    }
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(24)
        .max(24);
    let base_width = rows
        .iter()
        .map(|row| row.baseline.len())
        .max()
        .unwrap_or(24)
        .max(24);
    if !json {
        println!(
            "{:<width$} {:>12} {:<base_width$} {:>12} {:>8}",
            "name", "ns/op", "baseline", "ns/op", "ratio"
        );
    }
    let mut results = Vec::with_capacity(rows.len());
    for row in &mut rows {
        let m = mcpsec_bench::measure(row, budget);
        if !json {
            println!(
                "{:<width$} {:>12.1} {:<base_width$} {:>12.1} {:>8.2}",
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
