//! `otpgate-testcall ADDRESS INTERFACE METHOD [ARGS…]`: calls one otpgated
//! method on the bus at ADDRESS and prints one JSON object: `{"ok": reply}`
//! or `{"error": NAME, "message": TEXT}` (exit 1). Tests run it as other
//! uids to check the access table through the real bus.
//!
//! INTERFACE is Auth, Manager or Admin. Arguments by method:
//! Challenge USER [CONTEXT_JSON] · Verify USER CODE [CONTEXT_JSON] ·
//! Enroll USER [METHOD [EMAIL [NAME]]] (EMAIL "" for none) · Confirm USER CODE · Status USER ·
//! Disable USER [CODE] · RemoveDevice USER NAME [CODE] · RegenerateBackupCodes USER [CODE] · ListUsers ·
//! Unlock USER · Reset USER · Stats · Import USER FILE ·
//! History USER · Account USER [CONTEXT_JSON] · ExplainPolicy USER SERVICE [CONTEXT_JSON] ·
//! GenerateBreakglass USER · AcknowledgeBreakglass USER

use std::collections::HashMap;
use std::process::ExitCode;

use otpgate_proto::{AdminProxy, AuthProxy, ManagerProxy, OwnedDict};
use serde_json::{json, Map, Value};
use zbus::{OwnedVariant, Variant};

fn variant_json(v: &OwnedVariant) -> Value {
    if let Ok(s) = <&str>::try_from(v) {
        return json!(s);
    }
    if let Ok(b) = bool::try_from(v) {
        return json!(b);
    }
    if let Ok(n) = u32::try_from(v) {
        return json!(n);
    }
    if let Ok(n) = u64::try_from(v) {
        return json!(n);
    }
    if let Ok(n) = i32::try_from(v) {
        return json!(n);
    }
    if let Ok(n) = i64::try_from(v) {
        return json!(n);
    }
    if let Ok(Ok(list)) = v.try_clone().map(<Vec<OwnedDict>>::try_from) {
        return Value::Array(list.iter().map(dict_json).collect());
    }
    json!(format!("{v:?}"))
}

fn dict_json(d: &OwnedDict) -> Value {
    Value::Object(
        d.iter()
            .map(|(k, v)| (k.clone(), variant_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn context(arg: Option<&String>) -> HashMap<String, String> {
    arg.map(|s| serde_json::from_str(s).expect("context must be a JSON object of strings"))
        .unwrap_or_default()
}

fn as_dict(m: &HashMap<String, String>) -> HashMap<&str, Variant<'_>> {
    m.iter()
        .map(|(k, v)| (k.as_str(), Variant::from(v.as_str())))
        .collect()
}

async fn call(address: &str, iface: &str, method: &str, a: &[String]) -> zbus::Result<Value> {
    // A hung daemon fails the call (and so the test) instead of hanging it.
    let conn = zbus::connection::Builder::address(address)
        .method_timeout(std::time::Duration::from_secs(30))
        .build()
        .await?;
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let result = match (iface, method) {
        ("Auth", "Challenge") => {
            let ctx = context(a.get(1));
            let (s, d) = AuthProxy::new(&conn)
                .await?
                .challenge(arg(0), as_dict(&ctx))
                .await?;
            json!([s, dict_json(&d)])
        }
        ("Auth", "Verify") => {
            let ctx = context(a.get(2));
            let (s, d) = AuthProxy::new(&conn)
                .await?
                .verify(arg(0), arg(1), as_dict(&ctx))
                .await?;
            json!([s, dict_json(&d)])
        }
        ("Auth", "Account") => {
            let ctx = context(a.get(1));
            let (s, d) = AuthProxy::new(&conn)
                .await?
                .account(arg(0), as_dict(&ctx))
                .await?;
            json!([s, dict_json(&d)])
        }
        ("Admin", "ExplainPolicy") => {
            let ctx = context(a.get(2));
            let d = AdminProxy::new(&conn)
                .await?
                .explain_policy(arg(0), arg(1), as_dict(&ctx))
                .await?;
            let mut v = dict_json(&d);
            // `reasons` is an array of strings, which dict_json cannot show.
            if let Ok(x) = otpgate_proto::codec::Explanation::from_dict(&d) {
                v["reasons"] = json!(x.reasons);
            }
            v
        }
        ("Admin", "GenerateBreakglass") => json!(
            AdminProxy::new(&conn)
                .await?
                .generate_breakglass(arg(0))
                .await?
        ),
        ("Admin", "AcknowledgeBreakglass") => json!(
            AdminProxy::new(&conn)
                .await?
                .acknowledge_breakglass(arg(0))
                .await?
        ),
        ("Manager", "Enroll") => {
            let mut opts = HashMap::new();
            if let Some(m) = a.get(1) {
                opts.insert("method", Variant::from(m.as_str()));
            }
            if let Some(addr) = a.get(2).filter(|a| !a.is_empty()) {
                opts.insert("email", Variant::from(addr.as_str()));
            }
            if let Some(name) = a.get(3) {
                opts.insert("name", Variant::from(name.as_str()));
            }
            dict_json(&ManagerProxy::new(&conn).await?.enroll(arg(0), opts).await?)
        }
        ("Manager", "Confirm") => json!(
            ManagerProxy::new(&conn)
                .await?
                .confirm(arg(0), arg(1))
                .await?
        ),
        ("Manager", "History") => Value::Array(
            ManagerProxy::new(&conn)
                .await?
                .history(arg(0))
                .await?
                .iter()
                .map(dict_json)
                .collect(),
        ),
        ("Manager", "RemoveDevice") => {
            ManagerProxy::new(&conn)
                .await?
                .remove_device(arg(0), arg(1), arg(2))
                .await?;
            Value::Null
        }
        ("Manager", "Status") => dict_json(&ManagerProxy::new(&conn).await?.status(arg(0)).await?),
        ("Manager", "Disable") => {
            ManagerProxy::new(&conn)
                .await?
                .disable(arg(0), arg(1))
                .await?;
            json!(null)
        }
        ("Manager", "RemoveDeviceWithPassword") => {
            ManagerProxy::new(&conn)
                .await?
                .remove_device_with_password(arg(0), arg(1), arg(2), arg(3))
                .await?;
            json!(null)
        }
        ("Manager", "DisableWithPassword") => {
            ManagerProxy::new(&conn)
                .await?
                .disable_with_password(arg(0), arg(1), arg(2))
                .await?;
            json!(null)
        }
        ("Manager", "RegenerateBackupCodesWithPassword") => json!(
            ManagerProxy::new(&conn)
                .await?
                .regenerate_backup_codes_with_password(arg(0), arg(1), arg(2))
                .await?
        ),
        ("Manager", "RegenerateBackupCodes") => json!(
            ManagerProxy::new(&conn)
                .await?
                .regenerate_backup_codes(arg(0), arg(1))
                .await?
        ),
        ("Admin", "ListUsers") => Value::Array(
            AdminProxy::new(&conn)
                .await?
                .list_users()
                .await?
                .iter()
                .map(dict_json)
                .collect(),
        ),
        ("Admin", "Unlock") => {
            AdminProxy::new(&conn).await?.unlock(arg(0)).await?;
            json!(null)
        }
        ("Admin", "Reset") => {
            AdminProxy::new(&conn).await?.reset(arg(0)).await?;
            json!(null)
        }
        ("Admin", "Stats") => dict_json(&AdminProxy::new(&conn).await?.stats().await?),
        ("Admin", "Import") => {
            let contents = std::fs::read_to_string(arg(1)).expect("read import file");
            dict_json(
                &AdminProxy::new(&conn)
                    .await?
                    .import(arg(0), &contents)
                    .await?,
            )
        }
        _ => {
            eprintln!("unknown method {iface}.{method}");
            std::process::exit(2);
        }
    };
    Ok(result)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: otpgate-testcall ADDRESS INTERFACE METHOD [ARGS…]");
        return ExitCode::from(2);
    }
    match zruntime::block_on(call(&args[0], &args[1], &args[2], &args[3..])) {
        Ok(v) => {
            println!("{}", json!({ "ok": v }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (name, message) = match &e {
                zbus::Error::MethodError(name, desc, _) => {
                    (name.to_string(), desc.clone().unwrap_or_default())
                }
                zbus::Error::FDO(f) => {
                    let name = zbus::DBusError::name(f.as_ref()).to_string();
                    (
                        name,
                        zbus::DBusError::description(f.as_ref())
                            .unwrap_or("")
                            .to_string(),
                    )
                }
                other => ("transport".to_string(), other.to_string()),
            };
            println!("{}", json!({ "error": name, "message": message }));
            ExitCode::FAILURE
        }
    }
}
