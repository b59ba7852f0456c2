use crate::helpers::*;
use query_api::db::orders::Orders;
use query_api::db::returns::Returns;
use query_api::db::workflow::{select_list, ReadModels};
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

/// Asserts that every column of `W`'s status table not kept back is selected and served as a
/// field of the GraphQL type `object` or of its `milestones` type.
fn assert_every_served_column_is_selected_and_served<W: ReadModels>(
    object: &str,
    milestones: &str,
) {
    let sdl = query_api::schema::build_schema(&query_api::config::Config::local(
        "postgres://unused@127.0.0.1/unused",
    ))
    .sdl();
    let table = W::STATUS_TABLE;
    let fields = fields_of(&sdl, object);
    let milestone_fields = fields_of(&sdl, milestones);
    let select_list = select_list::<W>();
    let selected: Vec<&str> = select_list.split(", ").collect();
    for (column, _) in W::COLUMNS {
        if W::NOT_SERVED.contains(column) {
            continue;
        }
        assert!(
            selected.contains(column),
            "column `{column}` of {table} is not selected by the query side"
        );
        let field = W::SERVED_AS
            .iter()
            .find(|(c, _)| c == column)
            .map_or_else(|| camel_case(column), |(_, f)| (*f).to_owned());
        assert!(
            fields.contains(&field.as_str()) || milestone_fields.contains(&field.as_str()),
            "column `{column}` of {table} has no GraphQL field `{field}` on {object} or its \
             milestones: serve it, or name it in NOT_SERVED"
        );
    }
}

/// Asserts that every column `W` names as kept back or served under another name is a column of
/// its status table.
fn assert_every_column_named_is_a_column_of_the_status_table<W: ReadModels>() {
    let table = W::STATUS_TABLE;
    let columns: Vec<&str> = W::COLUMNS.iter().map(|(name, _)| *name).collect();
    for column in W::NOT_SERVED
        .iter()
        .chain(W::SERVED_AS.iter().map(|(c, _)| c))
    {
        assert!(
            columns.contains(column),
            "`{column}` is named by the query side but is not a column of {table}"
        );
    }
}

#[test]
fn every_column_of_order_status_not_kept_back_is_selected_and_served_as_a_field_of_order() {
    assert_every_served_column_is_selected_and_served::<Orders>("Order", "Milestones");
}

#[test]
fn every_column_kept_back_from_graphql_is_a_column_of_order_status() {
    assert_every_column_named_is_a_column_of_the_status_table::<Orders>();
}

#[test]
fn every_column_of_return_status_not_kept_back_is_selected_and_served_as_a_field_of_return() {
    assert_every_served_column_is_selected_and_served::<Returns>("Return", "ReturnMilestones");
}

#[test]
fn every_column_kept_back_from_graphql_is_a_column_of_return_status() {
    assert_every_column_named_is_a_column_of_the_status_table::<Returns>();
}
