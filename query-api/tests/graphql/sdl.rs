use crate::helpers::*;
use query_api::db::orders::{order_columns, NOT_SERVED, SERVED_AS};
use std::path::PathBuf;

/// Set `UPDATE_SCHEMAS=1` to rewrite the committed SDL after an intended change.
#[tokio::test]
async fn the_served_sdl_matches_the_committed_one() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/schema.graphql", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(served.contains("type Order"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/query.graphql");
    if std::env::var("UPDATE_SCHEMAS").is_ok() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .expect("schemas/query.graphql is missing: run with UPDATE_SCHEMAS=1");
    assert_eq!(
        served, committed,
        "the GraphQL schema drifted: run with UPDATE_SCHEMAS=1 and commit"
    );
}

/// The field names of `type <name>` in `sdl`, descriptions skipped.
fn fields_of<'a>(sdl: &'a str, name: &str) -> Vec<&'a str> {
    let start = sdl
        .find(&format!("type {name} {{"))
        .unwrap_or_else(|| panic!("the schema has no type {name}"));
    let body = &sdl[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    let mut in_description = false;
    let mut fields = Vec::new();
    for line in body.lines().map(str::trim) {
        if in_description {
            in_description = !line.ends_with("\"\"\"");
            continue;
        }
        if let Some(rest) = line.strip_prefix("\"\"\"") {
            in_description = rest.is_empty() || !rest.ends_with("\"\"\"");
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let end = line.find([':', '(']).unwrap_or(line.len());
        fields.push(&line[..end]);
    }
    fields
}

fn camel_case(column: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in column.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn every_column_of_order_status_not_kept_back_is_selected_and_served_as_a_field_of_order() {
    let sdl = query_api::schema::build_schema(&query_api::config::Config::local(
        "postgres://unused@127.0.0.1/unused",
    ))
    .sdl();
    let order = fields_of(&sdl, "Order");
    let milestones = fields_of(&sdl, "Milestones");
    let selected: Vec<&str> = order_columns().split(", ").collect();
    for (column, _) in projector::ORDER_STATUS_COLUMNS {
        if NOT_SERVED.contains(column) {
            continue;
        }
        assert!(
            selected.contains(column),
            "column `{column}` of order_status is not selected by the query side"
        );
        let field = SERVED_AS
            .iter()
            .find(|(c, _)| c == column)
            .map_or_else(|| camel_case(column), |(_, f)| (*f).to_owned());
        assert!(
            order.contains(&field.as_str()) || milestones.contains(&field.as_str()),
            "column `{column}` of order_status has no GraphQL field `{field}` on Order or its \
             milestones: serve it, or name it in NOT_SERVED"
        );
    }
}

#[test]
fn every_column_kept_back_from_graphql_is_a_column_of_order_status() {
    let columns: Vec<&str> = projector::ORDER_STATUS_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    for column in NOT_SERVED.iter().chain(SERVED_AS.iter().map(|(c, _)| c)) {
        assert!(
            columns.contains(column),
            "`{column}` is named by the query side but is not a column of order_status"
        );
    }
}
