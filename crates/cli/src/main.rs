//! `mcpsec`: the operator tool.
//!
//! Exit codes everywhere: 0 success / allowed / valid; 1 denied / invalid (the input was
//! read fine and the answer is no); 2 usage or input error.

use clap::{Parser, Subcommand, ValueEnum};
use mcpsec_access::{Action, Role, ScopeSet};
use mcpsec_cli::access::{self, Owner};
use mcpsec_cli::bench;
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
