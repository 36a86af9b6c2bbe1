//! The OpenAPI 3.0 document, generated from the request contract ([`super::contract`]):
//! every value's schema comes from the rule the handlers check it with, the routes and
//! methods from [`ROUTES`], the per-`type` parameters of the seed's `/user` from
//! [`SEED_USER_PARAMS`]. Nothing here restates a bound by hand, so the document and the
//! server cannot drift. Response schemas describe what is stored and stay loose (a row
//! written before a rule existed is still a valid answer).

use super::contract::{Rule, DICT_LITERAL_PATTERN, ROUTES};
use super::requests::{PATCH_FIELDS, SEED_USER_PARAMS};
use crate::topology::record::Column;
use serde_json::{json, Map, Value};

const COLUMNS: [Column; 5] = [
    Column::Uid,
    Column::Name,
    Column::Lname,
    Column::CreditLimit,
    Column::CreditBalance,
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn column_schema(name: &str) -> Value {
    match Column::parse(name) {
        Some(column) => Rule::for_column(column).schema(),
        None => json!({"type": "string"}),
    }
}

/// An object whose properties are `fields` under their columns' rules.
fn object(fields: &[&str], required: &[&str], min_properties: usize) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|f| (f.to_string(), column_schema(f))).collect();
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if min_properties > 0 {
        schema["minProperties"] = json!(min_properties);
    }
    schema
}

/// Query parameters given as one exploded object (`?a=1&b=2`): how OpenAPI 3.0 states
/// which parameters go together.
fn query_object(name: &str, schema: Value, required: bool) -> Value {
    json!({"name": name, "in": "query", "style": "form", "explode": true, "required": required, "schema": schema})
}

fn path_id(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": Rule::Id.schema()})
}

fn wait_ms(max_wait_ms: u64) -> Value {
    json!({
        "name": "wait_ms", "in": "query", "required": false, "schema": Rule::WaitMs(max_wait_ms).schema(),
        "description": "Long poll: wait up to this long for the outcome, ms (0 answers at once)."
    })
}

fn error() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

fn json_body(schema: Value, description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn eventual(schema: Value, description: &str) -> Value {
    let mut response = json_body(schema, description);
    response["headers"] = json!({"X-Consistency": {"schema": {"type": "string", "enum": ["eventual"]}}});
    response
}

/// The errors every application operation may answer, besides its own.
fn with_errors(mut responses: Value, extra: &[&str]) -> Value {
    for status in ["400", "401", "503"].iter().chain(extra) {
        responses[*status] = error();
    }
    responses
}

fn links(pairs: &[(&str, &str, &str)]) -> Value {
    let links: Map<String, Value> = pairs
        .iter()
        .map(|(name, operation, parameter)| {
            let source = format!("$response.body#/{parameter}");
            (
                name.to_string(),
                json!({"operationId": operation, "parameters": {*parameter: source}}),
            )
        })
        .collect();
    Value::Object(links)
}

fn command_accepted(extra_links: &[(&str, &str, &str)]) -> Value {
    let mut all = vec![("GetCommand", "getCommand", "command_id")];
    all.extend_from_slice(extra_links);
    json!({
        "description": "Published to Kafka and acknowledged; `Location` is where its outcome can be read.",
        "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": schema_ref("CommandAccepted")}},
        "links": links(&all)
    })
}

fn seed_user_params() -> Value {
    let branches: Vec<Value> = SEED_USER_PARAMS
        .iter()
        .map(|(kind, fields)| {
            let (required, min): (&[&str], usize) = match *kind {
                "C" => (&["type", "name", "lname", "credit_limit", "credit_balance"], 0),
                "U" => (&["type", "condition", "new_val"], 0),
                "D" => (&["type"], 2),
                _ => (&["type"], 0),
            };
            let mut branch = object(fields, required, min);
            branch["properties"]["type"] = json!({"type": "string", "enum": [kind]});
            for dict in ["condition", "new_val"].iter().filter(|f| fields.contains(f)) {
                branch["properties"][*dict] = json!({
                    "type": "string", "pattern": DICT_LITERAL_PATTERN,
                    "description": "A JSON object or Python dict literal of columns and values, e.g. {'uid': 5}; \
                                    at least one entry; values follow the columns' rules (uid cannot be set)."
                });
            }
            branch
        })
        .collect();
    json!({"oneOf": branches})
}

fn seed_paths() -> (Value, Value) {
    let order = json!({
        "summary": "Place an order (seed-compatible).",
        "parameters": [
            {"name": "uid", "in": "query", "required": true, "schema": Rule::Id.schema()},
            {"name": "amount", "in": "query", "required": true, "schema": Rule::Amount.schema()}
        ],
        "responses": with_errors(json!({
            "202": {"description": "Published.", "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": schema_ref("OrderAccepted")}}}
        }), &["413"])
    });
    let user = json!({
        "summary": "Create (C), read (R), update (U) or delete (D) users (seed-compatible). A new user's \
                    credit_balance must not exceed its credit_limit: such a create is refused with 400.",
        "parameters": [query_object("user", seed_user_params(), true)],
        "responses": with_errors(json!({
            "200": eventual(json!({"type": "array", "items": schema_ref("User")}), "Matching users (type R)."),
            "202": command_accepted(&[])
        }), &["413"])
    });
    (order, user)
}

/// The whole document; `max_wait_ms` is the configured bound of `wait_ms`.
pub fn document(max_wait_ms: u64) -> Value {
    let patch_fields: Vec<&str> = PATCH_FIELDS.iter().map(|c| c.as_str()).collect();
    let column_names: Vec<&str> = COLUMNS.iter().map(|c| c.as_str()).collect();
    let (seed_order, seed_user) = seed_paths();
    let mut paths = Map::new();
    paths.insert("/order".into(), json!({"get": seed_order.clone(), "post": seed_order}));
    paths.insert("/user".into(), json!({"get": seed_user.clone(), "post": seed_user}));
    paths.insert(
        "/v1/orders".into(),
        json!({"post": {
            "operationId": "placeOrder",
            "summary": "Place an order. A retry with the same idempotency key (body or header) gets the same order id.",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                            "schema": Rule::IdempotencyKey.schema()}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("NewOrder")}}},
            "responses": with_errors(json!({
                "202": {"description": "Published.", "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": schema_ref("OrderAccepted")}},
                        "links": links(&[("GetOrder", "getOrder", "order_id")])}
            }), &["411", "413"])
        }}),
    );
    paths.insert(
        "/v1/orders/{order_id}".into(),
        json!({"get": {
            "operationId": "getOrder",
            "summary": "An order's events, once the sink wrote them; an order this replica accepted is waited for.",
            "parameters": [path_id("order_id"), wait_ms(max_wait_ms)],
            "responses": with_errors(json!({"200": eventual(schema_ref("OrderView"), "The order.")}), &["404"])
        }}),
    );
    paths.insert(
        "/v1/commands/{command_id}".into(),
        json!({"get": {
            "operationId": "getCommand",
            "summary": "What became of a create, update or delete: accepted, then applied or rejected.",
            "description": "wait_ms waits only for a command that can still be on its way: one whose id was \
                            minted in the last 15 minutes. Any other unknown id (minted long ago, in the future, \
                            or never by an ingest) is answered 404 at once.",
            "parameters": [path_id("command_id"), wait_ms(max_wait_ms)],
            "responses": with_errors(json!({"200": json_body(schema_ref("CommandView"), "The command.")}), &["404"])
        }}),
    );
    let conditions =
        |required: bool| query_object("condition", object(&column_names, &[], usize::from(required)), required);
    paths.insert("/v1/users".into(), json!({
        "get": {
            "operationId": "findUsers",
            "summary": "Users matching every condition (at most 1000).",
            "parameters": [conditions(false)],
            "responses": with_errors(json!({"200": eventual(json!({"type": "array", "items": schema_ref("User")}), "Users.")}), &[])
        },
        "post": {
            "operationId": "createUser",
            "summary": "Create a user. Its credit_balance must not exceed its credit_limit: a request \
                        that breaks that rule (between two fields) is refused with 400.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("NewUser")}}},
            "responses": with_errors(json!({"202": command_accepted(&[("GetUser", "getUser", "uid")])}), &["411", "413"])
        },
        "patch": {
            "operationId": "updateUsers",
            "summary": "Set columns of every user matching the conditions (at least one).",
            "parameters": [conditions(true)],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("UserPatch")}}},
            "responses": with_errors(json!({"202": command_accepted(&[])}), &["411", "413"])
        },
        "delete": {
            "operationId": "deleteUsers",
            "summary": "Delete every user matching the conditions (at least one).",
            "parameters": [conditions(true)],
            "responses": with_errors(json!({"202": command_accepted(&[])}), &[])
        }
    }));
    paths.insert(
        "/v1/users/{uid}".into(),
        json!({
            "get": {
                "operationId": "getUser",
                "summary": "One user; a user this replica just wrote is waited for (read-your-writes).",
                "parameters": [path_id("uid")],
                "responses": with_errors(json!({"200": eventual(schema_ref("User"), "The user.")}), &["404"])
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Set columns of one user; the outcome says whether it existed. 404 when this \
                            replica deleted the user and it is still gone.",
                "parameters": [path_id("uid")],
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("UserPatch")}}},
                "responses": with_errors(json!({"202": command_accepted(&[])}), &["404", "411", "413"])
            },
            "delete": {
                "operationId": "deleteUser",
                "summary": "Delete one user; the outcome says whether it existed. 404 when this replica \
                            already deleted the user and it is still gone.",
                "parameters": [path_id("uid")],
                "responses": with_errors(json!({"202": command_accepted(&[])}), &["404"])
            }
        }),
    );
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "The process is up.",
        "responses": {"200": json_body(json!({"type": "object"}), "Up.")}}}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {"summary": "Kafka and MySQL are reachable.",
        "responses": {"200": json_body(json!({"type": "object"}), "Ready."), "503": error()}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus metrics (text format).",
        "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document.",
        "responses": {"200": json_body(json!({"type": "object"}), "The document.")}}}),
    );
    debug_assert!(ROUTES.iter().all(|(route, _)| paths.contains_key(*route)));

    let mut new_user = object(&column_names, &["name", "lname", "credit_limit", "credit_balance"], 0);
    new_user["description"] = json!(
        "credit_balance must not exceed credit_limit (a request that breaks it is refused with 400). \
         Without uid, one is assigned."
    );
    new_user["example"] = json!({"name": "Asha", "lname": "Rao", "credit_limit": 500, "credit_balance": 500});
    let mut new_order = object(&["uid"], &["uid", "amount"], 0);
    new_order["example"] = json!({"uid": 1, "amount": 120});
    let mut user_patch = object(&patch_fields, &[], 1);
    user_patch["example"] = json!({"credit_limit": 1000});
    new_order["properties"]["amount"] = Rule::Amount.schema();
    new_order["properties"]["idempotency_key"] = Rule::IdempotencyKey.schema();
    let int = json!({"type": "integer", "format": "int64"});
    let text = json!({"type": "string"});
    let command_user = json!({"type": "object", "required": ["uid"], "properties": {
        "uid": int, "version": int, "deleted": {"type": "boolean"}, "reason": text}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "creditstream ingest API",
            "version": "2.0.0",
            "description": "Writes are published to Kafka and answered 202 once the broker acknowledged them, \
                with a Location where their outcome can be read; the credit check runs asynchronously. Reads \
                come from the MySQL tables the sink maintains and are eventually consistent (X-Consistency: \
                eventual), except that a replica waits for its own recent writes. Errors are JSON {error, \
                field}; a 405 carries Allow, a 503 Retry-After. When auth is configured, write routes need \
                'Authorization: Bearer <token>'."
        },
        "paths": paths,
        "components": {
            "responses": {"Error": json_body(schema_ref("Error"), "The request was refused; `field` names the culprit.")},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": text, "field": text}},
                "CommandAccepted": {"type": "object", "required": ["command_id", "status"], "properties": {
                    "command_id": int, "uid": int, "status": {"type": "string", "enum": ["accepted"]}}},
                "OrderAccepted": {"type": "object", "required": ["order_id", "uid", "amount", "status"], "properties": {
                    "order_id": int, "uid": int, "amount": int, "status": {"type": "string", "enum": ["Initialised"]}}},
                "NewOrder": new_order,
                "NewUser": new_user,
                "UserPatch": user_patch,
                "User": {"type": "object", "required": column_names, "properties": {
                    "uid": int, "name": text, "lname": text, "credit_limit": int, "credit_balance": int}},
                "OrderEvent": {"type": "object", "properties": {
                    "eventid": int, "orderid": int, "uid": int,
                    "order_status": {"type": "string", "enum": ["Initialised", "Completed", "Declined"]},
                    "event_timestamp": text, "order_amount": int, "order_notes": text}},
                "OrderView": {"type": "object", "required": ["order_id", "status", "events"], "properties": {
                    "order_id": int, "status": text, "events": {"type": "array", "items": schema_ref("OrderEvent")}}},
                "CommandView": {"type": "object",
                    "required": ["command_id", "status", "changed", "rejected", "truncated", "partitions_done"],
                    "properties": {
                        "command_id": int,
                        "status": {"type": "string", "enum": ["accepted", "applied", "rejected"]},
                        "reason": text,
                        "changed": {"type": "array", "items": command_user},
                        "rejected": {"type": "array", "items": command_user},
                        "truncated": {"type": "boolean"},
                        "partitions_done": int,
                        "partitions": int}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_method_of_the_router_is_documented() {
        let doc = document(30_000);
        for (route, methods) in ROUTES {
            for method in *methods {
                assert!(
                    doc["paths"][*route][method.to_lowercase()].is_object(),
                    "{method} {route}"
                );
            }
        }
    }

    #[test]
    fn value_schemas_come_from_the_rules() {
        let doc = document(1234);
        assert_eq!(
            doc["components"]["schemas"]["NewUser"]["properties"]["name"],
            Rule::Name.schema()
        );
        assert_eq!(
            doc["components"]["schemas"]["NewOrder"]["properties"]["uid"],
            Rule::Id.schema()
        );
        let wait = &doc["paths"]["/v1/orders/{order_id}"]["get"]["parameters"][1]["schema"];
        assert_eq!(wait["maximum"].as_u64(), Some(1234));
    }
}
