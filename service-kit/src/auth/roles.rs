//! Roles and the scopes each grants, declared once: the command API's routes and the query
//! API's fields name the scope they need, the README's table is rendered from here.

use std::fmt;
use std::str::FromStr;

/// What a caller may do. A route or field names the one scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Place orders.
    PlaceOrders,
    /// Cancel orders.
    CancelOrders,
    /// Request returns.
    RequestReturns,
    /// Approve, reject or cancel returns.
    DecideReturns,
    /// Report payment milestones: authorized, declined, voided.
    ReportPayments,
    /// Report stock milestones: reserved, shortage, released.
    ReportInventory,
    /// Report warehouse milestones: fulfilment started, returned items received or shipped back.
    ReportWarehouse,
    /// Report carrier milestones: shipped, delivered.
    ReportCarrier,
    /// Report refunds issued.
    ReportRefunds,
    /// Escalate an unfinished order or return to a person.
    Escalate,
    /// Read orders and returns (a customer: only their own).
    Read,
    /// Read what spans every customer: stalled lists, counts, projection and relay status.
    ReadOperations,
    /// Export streams (the analyst's tools).
    Export,
    /// Apply a parked instance's dead-lettered events again after a fix.
    RepairProjections,
}

impl Scope {
    pub const ALL: [Scope; 14] = [
        Scope::PlaceOrders,
        Scope::CancelOrders,
        Scope::RequestReturns,
        Scope::DecideReturns,
        Scope::ReportPayments,
        Scope::ReportInventory,
        Scope::ReportWarehouse,
        Scope::ReportCarrier,
        Scope::ReportRefunds,
        Scope::Escalate,
        Scope::Read,
        Scope::ReadOperations,
        Scope::Export,
        Scope::RepairProjections,
    ];

    /// The scope's name, as the OpenAPI document and errors show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::PlaceOrders => "orders:place",
            Scope::CancelOrders => "orders:cancel",
            Scope::RequestReturns => "returns:request",
            Scope::DecideReturns => "returns:decide",
            Scope::ReportPayments => "payments:report",
            Scope::ReportInventory => "inventory:report",
            Scope::ReportWarehouse => "warehouse:report",
            Scope::ReportCarrier => "carrier:report",
            Scope::ReportRefunds => "refunds:report",
            Scope::Escalate => "escalate",
            Scope::Read => "read",
            Scope::ReadOperations => "read:operations",
            Scope::Export => "export",
            Scope::RepairProjections => "projections:repair",
        }
    }

    /// The roles granting this scope.
    pub fn roles(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |r| r.scopes().contains(&self))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a caller is, as the token's `role` claim names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Shop,
    Payment,
    Inventory,
    Warehouse,
    Carrier,
    Refunds,
    Support,
    Analyst,
    Customer,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Shop,
        Role::Payment,
        Role::Inventory,
        Role::Warehouse,
        Role::Carrier,
        Role::Refunds,
        Role::Support,
        Role::Analyst,
        Role::Customer,
    ];

    /// The role's name, as the `role` claim carries it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Shop => "shop",
            Role::Payment => "payment",
            Role::Inventory => "inventory",
            Role::Warehouse => "warehouse",
            Role::Carrier => "carrier",
            Role::Refunds => "refunds",
            Role::Support => "support",
            Role::Analyst => "analyst",
            Role::Customer => "customer",
        }
    }

    /// The scopes the role grants.
    pub const fn scopes(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            Role::Shop => &[PlaceOrders, CancelOrders, RequestReturns, DecideReturns],
            Role::Payment => &[ReportPayments],
            Role::Inventory => &[ReportInventory],
            Role::Warehouse => &[ReportWarehouse],
            Role::Carrier => &[ReportCarrier],
            Role::Refunds => &[ReportRefunds],
            Role::Support => &[Read, ReadOperations, Escalate, RepairProjections],
            Role::Analyst => &[Read, ReadOperations, Export],
            Role::Customer => &[Read],
        }
    }

    /// Who holds the role, for the README's table.
    const fn holder(self) -> &'static str {
        match self {
            Role::Shop => "the shop front end or partner system",
            Role::Payment => "the payment service",
            Role::Inventory => "the inventory service",
            Role::Warehouse => "the warehouse",
            Role::Carrier => "the carrier integration",
            Role::Refunds => "the refunds service",
            Role::Support => "support staff",
            Role::Analyst => "analysts and dashboards",
            Role::Customer => {
                "a shop's customer; reads only the orders and returns whose `customer_id` is the \
                 token's `customer_id` claim"
            }
        }
    }

    /// The README's table of roles and their scopes, rendered from [`Role::scopes`].
    pub fn markdown_table() -> String {
        let mut table = String::from("| role | scopes | who |\n|---|---|---|\n");
        for role in Role::ALL {
            let scopes: Vec<String> = role.scopes().iter().map(|s| format!("`{s}`")).collect();
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                role.as_str(),
                scopes.join(", "),
                role.holder()
            ));
        }
        table
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `role` claim naming no known role.
#[derive(Debug, thiserror::Error)]
#[error("the role `{0}` is not known")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}
