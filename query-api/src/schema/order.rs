//! An answer's top-level fields in the order its operation asks for them, as the GraphQL spec
//! asks: async-graphql resolves them concurrently and keeps them in the order they finished.
//! The order is read from the document async-graphql parsed (no second parse), and only an
//! operation with several top-level fields is reordered.

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{Name, Response, ServerResult, Value, Variables};
use std::sync::{Arc, Mutex, PoisonError};

/// The extension (one per request).
pub(super) struct FieldOrder;

impl ExtensionFactory for FieldOrder {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OrderOf::default())
    }
}

/// A request's operations with several top-level fields: each one's name (none for an
/// anonymous one) and its response keys in order.
#[derive(Default)]
struct OrderOf(Mutex<Vec<(Option<Name>, Vec<Name>)>>);

#[async_graphql::async_trait::async_trait]
impl Extension for OrderOf {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = top_level_keys(&document);
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        let operations = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = keys_of(&operations, operation_name) {
            reorder(&mut response.data, keys);
        }
        response
    }
}

/// The keys of the operation executed (`name`, or without one the document's only one: else
/// the answer is an error anyway), when it has several top-level fields.
fn keys_of<'a>(
    operations: &'a [(Option<Name>, Vec<Name>)],
    name: Option<&str>,
) -> Option<&'a [Name]> {
    operations
        .iter()
        .find(|(operation, _)| name.is_none_or(|wanted| operation.as_deref() == Some(wanted)))
        .map(|(_, keys)| keys.as_slice())
}

/// Each operation of `document` with several top-level fields, with their response keys.
fn top_level_keys(document: &ExecutableDocument) -> Vec<(Option<Name>, Vec<Name>)> {
    let operations: Vec<(Option<&Name>, &SelectionSet)> = match &document.operations {
        DocumentOperations::Single(op) => vec![(None, &op.node.selection_set.node)],
        DocumentOperations::Multiple(ops) => ops
            .iter()
            .map(|(name, op)| (Some(name), &op.node.selection_set.node))
            .collect(),
    };
    operations
        .into_iter()
        .filter_map(|(name, set)| {
            let mut keys = Vec::new();
            response_keys(set, document, &mut keys, 0);
            (keys.len() > 1).then(|| (name.cloned(), keys))
        })
        .collect()
}

/// The response keys (alias, else name) of `set`'s fields in order, fragments expanded.
fn response_keys(
    set: &SelectionSet,
    document: &ExecutableDocument,
    keys: &mut Vec<Name>,
    depth: usize,
) {
    // Validation refuses fragment cycles before execution; a bound all the same.
    if depth > 32 {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => keys.push(field.node.response_key().node.clone()),
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    let set = &fragment.node.selection_set.node;
                    response_keys(set, document, keys, depth + 1);
                }
            }
            Selection::InlineFragment(inline) => {
                response_keys(&inline.node.selection_set.node, document, keys, depth + 1);
            }
        }
    }
}

/// `data`'s fields in the order of `keys`; those `keys` does not name keep their order, after.
fn reorder(data: &mut Value, keys: &[Name]) {
    let Value::Object(fields) = data else {
        return;
    };
    let mut ordered = async_graphql::indexmap::IndexMap::with_capacity(fields.len());
    for key in keys {
        if let Some((name, value)) = fields.shift_remove_entry(key) {
            ordered.insert(name, value);
        }
    }
    ordered.extend(fields.drain(..));
    *fields = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(keys: &[&str]) -> Value {
        Value::Object(
            keys.iter()
                .map(|k| (Name::new(k), Value::from(*k)))
                .collect(),
        )
    }

    fn keys(value: &Value) -> Vec<String> {
        match value {
            Value::Object(fields) => fields.keys().map(ToString::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// As the extension does: the keys of the operation named `operation` (or the only one).
    fn in_query_order(data: &mut Value, query: &str, operation: Option<&str>) {
        let Ok(document) = async_graphql::parser::parse_query(query) else {
            return;
        };
        if let Some(keys) = keys_of(&top_level_keys(&document), operation) {
            reorder(data, keys);
        }
    }

    #[test]
    fn top_level_fields_come_back_in_the_order_the_query_asks_for_them() {
        let query = "query Q { b: relayStatus { name } ...F statusCounts { status } }
                     fragment F on Query { ... on Query { a: projectionStatus { name } } }
                     query Other { statusCounts { status } relayStatus { name } }";
        let mut data = object(&["statusCounts", "a", "b"]);
        in_query_order(&mut data, query, Some("Q"));
        assert_eq!(keys(&data), ["b", "a", "statusCounts"]);
        in_query_order(&mut data, query, Some("Other"));
        assert_eq!(
            keys(&data),
            ["statusCounts", "b", "a"],
            "keys the operation does not name keep their order, after"
        );
        let mut data = object(&["y", "x"]);
        in_query_order(
            &mut data,
            "{ x: statusCounts { status } y: relayStatus { name } }",
            None,
        );
        assert_eq!(keys(&data), ["x", "y"]);
        let mut untouched = object(&["y", "x"]);
        in_query_order(&mut untouched, "{ not a query", None);
        assert_eq!(keys(&untouched), ["y", "x"]);
    }

    #[test]
    fn an_operation_with_one_top_level_field_is_not_kept() {
        let document = async_graphql::parser::parse_query("{ order(id: \"x\") { status } }");
        assert!(top_level_keys(&document.unwrap()).is_empty());
    }
}
