//! CLI for approvals and gates: people, groups, the policy, change requests, decisions, the
//! approval queue and `gate wait`.
//!
//! `shipgate gate wait` exits 0 only when the deployment is allowed; otherwise 8 when still
//! pending at the timeout, 9 when denied or expired, 7 when shipgate cannot decide.
mod access;
mod change;
mod directory;
mod gate;
mod policy;
mod queue;

use clap::Subcommand;

use crate::client::{CliResult, Client};
use crate::output::Output;

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ApprovalCommand {
    /// People who can approve (admin).
    #[command(subcommand)]
    Person(directory::PersonCmd),
    /// Approver groups (admin).
    #[command(subcommand)]
    Group(directory::GroupCmd),
    /// The approval policy: push, diff, history, show.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Change requests.
    #[command(subcommand)]
    Change(change::ChangeCmd),
    /// Your approval queue (`--all`: every pending change and who is blocking it).
    Approvals {
        #[arg(long)]
        all: bool,
    },
    /// Approve a change.
    Approve(change::DecideArgs),
    /// Reject a change (final until resubmitted), or ask for changes with --request-changes.
    Reject {
        #[command(flatten)]
        args: change::DecideArgs,
        #[arg(long)]
        request_changes: bool,
    },
    /// Pipeline gates.
    #[command(subcommand)]
    Gate(gate::GateCmd),
    /// Post-deployment reviews due, and root-cause reviews.
    Reviews,
    /// Delegations of approval authority while you are away.
    #[command(subcommand)]
    Delegation(access::DelegationCmd),
    /// Access reviews: who holds which privileges; attest or revoke each.
    #[command(subcommand)]
    Access(access::AccessCmd),
}

pub async fn run(cmd: ApprovalCommand, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        ApprovalCommand::Person(cmd) => directory::person(cmd, c, out).await,
        ApprovalCommand::Group(cmd) => directory::group(cmd, c, out).await,
        ApprovalCommand::Policy(cmd) => policy::run(cmd, c, out).await,
        ApprovalCommand::Change(cmd) => change::run(cmd, c, out).await,
        ApprovalCommand::Approvals { all } => queue::approvals(c, out, all).await,
        ApprovalCommand::Approve(args) => change::approve(c, out, &args).await,
        ApprovalCommand::Reject {
            args,
            request_changes,
        } => change::reject(c, out, &args, request_changes).await,
        ApprovalCommand::Gate(cmd) => gate::run(cmd, c, out).await,
        ApprovalCommand::Reviews => queue::reviews(c, out).await,
        ApprovalCommand::Delegation(cmd) => access::delegation(cmd, c, out).await,
        ApprovalCommand::Access(cmd) => access::access(cmd, c, out).await,
    }
}
