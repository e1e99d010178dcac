//! The real otpgated's D-Bus interface is exactly proto's method table, and
//! proto's proxies fit it: a method renamed, added, dropped or re-typed on
//! either side fails here rather than at a login. The PAM module's calls are
//! typed from the same table (a unit test in proto holds them to it).

use std::collections::{BTreeMap, BTreeSet};

use otpgate_proto::methods::{self, Spec};
use otpgate_proto::{AdminProxy, AuthProxy, Dict, ManagerProxy, BUS_NAME, OBJECT_PATH};
use otpgate_tests::*;
use zbus::proxy::CacheProperties;

/// `(name, in-signature, out-signature)`, as the table and the XML say.
type Methods = BTreeSet<(String, String, String)>;

/// One tag of the introspection XML: `</x>` has `closing`, `<x/>` has
/// `empty`.
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
    closing: bool,
    empty: bool,
}

/// The tags of an introspection document, in order. Enough XML for what
/// D-Bus introspection uses: elements, double- or single-quoted attributes,
/// a DOCTYPE, comments; no entities appear in names or signatures.
fn tags(xml: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").expect("unterminated comment");
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').expect("unterminated tag");
        let inner = &rest[1..end];
        rest = &rest[end + 1..];
        if inner.starts_with('!') || inner.starts_with('?') {
            continue;
        }
        let (closing, inner) = match inner.strip_prefix('/') {
            Some(i) => (true, i),
            None => (false, inner),
        };
        let (empty, inner) = match inner.trim_end().strip_suffix('/') {
            Some(i) => (true, i),
            None => (false, inner),
        };
        let inner = inner.trim();
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        let name = inner[..name_end].to_string();
        let mut attrs = BTreeMap::new();
        let mut a = inner[name_end..].trim_start();
        while !a.is_empty() {
            let eq = a
                .find('=')
                .unwrap_or_else(|| panic!("attribute without value: {a}"));
            let key = a[..eq].trim().to_string();
            let v = a[eq + 1..].trim_start();
            let quote = v.chars().next().expect("attribute value");
            assert!(
                quote == '"' || quote == '\'',
                "unquoted attribute in {inner}"
            );
            let close = v[1..].find(quote).expect("unterminated attribute") + 1;
            attrs.insert(key, v[1..close].to_string());
            a = v[close + 1..].trim_start();
        }
        out.push(Tag {
            name,
            attrs,
            closing,
            empty,
        });
    }
    out
}

/// Every interface of the node: its methods, and the names of anything else
/// it declares (signals, properties), which the table has none of.
fn interfaces(xml: &str) -> BTreeMap<String, (Methods, Vec<String>)> {
    let mut out: BTreeMap<String, (Methods, Vec<String>)> = BTreeMap::new();
    let mut iface: Option<String> = None;
    // (name, in, out) of the method being read.
    let mut method: Option<(String, String, String)> = None;
    for t in tags(xml) {
        let attr = |k: &str| t.attrs.get(k).cloned().unwrap_or_default();
        match (t.name.as_str(), t.closing) {
            ("interface", false) => {
                let name = attr("name");
                out.entry(name.clone()).or_default();
                iface = (!t.empty).then_some(name);
            }
            ("interface", true) => iface = None,
            ("method", false) => {
                let m = (attr("name"), String::new(), String::new());
                if t.empty {
                    let i = iface.as_ref().expect("a method outside an interface");
                    out.get_mut(i).expect("interface").0.insert(m);
                } else {
                    method = Some(m);
                }
            }
            ("method", true) => {
                let m = method.take().expect("</method> without <method>");
                let i = iface.as_ref().expect("a method outside an interface");
                out.get_mut(i).expect("interface").0.insert(m);
            }
            ("arg", false) => {
                if let Some((_, args, reply)) = method.as_mut() {
                    // A method argument without a direction is an input.
                    match attr("direction").as_str() {
                        "out" => reply.push_str(&attr("type")),
                        "in" | "" => args.push_str(&attr("type")),
                        other => panic!("arg direction {other:?}"),
                    }
                }
            }
            ("signal" | "property", false) => {
                if let Some(i) = &iface {
                    out.get_mut(i).expect("interface").1.push(format!(
                        "{} {}",
                        t.name,
                        attr("name")
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

fn table(specs: &[Spec]) -> Methods {
    specs
        .iter()
        .map(|m| (m.name.to_string(), m.args.to_string(), m.reply.to_string()))
        .collect()
}

async fn introspect(conn: &zbus::Connection) -> String {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .await
        .expect("Introspect");
    reply.body().deserialize::<String>().expect("an XML string")
}

#[test]
fn the_daemon_exports_exactly_the_method_table() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let xml = zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .expect("connect to the test bus");
        introspect(&conn).await
    });
    let found = interfaces(&xml);

    let ours: BTreeSet<&str> = found
        .keys()
        .map(String::as_str)
        .filter(|name| name.starts_with("org.otpgate."))
        .collect();
    let listed: BTreeSet<&str> = methods::INTERFACES.iter().map(|(name, _)| *name).collect();
    assert_eq!(ours, listed, "interfaces on {OBJECT_PATH}:\n{xml}");

    for (iface, specs) in methods::INTERFACES {
        let (exported, others) = &found[*iface];
        assert_eq!(
            *exported,
            table(specs),
            "{iface}: the daemon's methods (left) are not proto's table (right)"
        );
        assert!(others.is_empty(), "{iface} declares {others:?}");
    }
}

/// A call the object accepted: answered, or refused by otpgated itself.
/// What is ruled out is the bus or zbus saying the call did not fit (no
/// such method, arguments of the wrong type) or a reply that did not
/// deserialise into the proxy's type.
fn fitted<T>(what: &str, r: zbus::Result<T>) {
    let name = match r {
        Ok(_) => return,
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(zbus::Error::FDO(e)) => zbus::DBusError::name(e.as_ref()).to_string(),
        Err(other) => panic!("{what}: {other}"),
    };
    assert!(
        name.starts_with(otpgate_proto::ERROR_PREFIX) || name == otpgate_proto::ACCESS_DENIED,
        "{what}: {name}: the proxy does not fit the daemon's method"
    );
}

#[test]
fn every_proxy_method_fits_the_daemon() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    // No account has this name: every per-user call is refused by the
    // daemon (or answered "not enrolled") after zbus has matched it, and
    // nothing is created.
    let nobody = format!("otpgif-none-{}", std::process::id());
    let u = nobody.as_str();
    zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .expect("connect to the test bus");
        let auth = AuthProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .expect("Auth proxy");
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .expect("Manager proxy");
        let admin = AdminProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .expect("Admin proxy");

        fitted("Challenge", auth.challenge(u, Dict::new()).await);
        fitted("Verify", auth.verify(u, "123456", Dict::new()).await);
        fitted("Enroll", manager.enroll(u, Dict::new()).await);
        fitted("Confirm", manager.confirm(u, "123456").await);
        fitted("Status", manager.status(u).await);
        fitted("Disable", manager.disable(u, "").await);
        fitted("RemoveDevice", manager.remove_device(u, "x", "").await);
        fitted(
            "RegenerateBackupCodes",
            manager.regenerate_backup_codes(u, "").await,
        );
        // As root these two are answered: their replies are read too.
        admin.list_users().await.expect("ListUsers");
        admin.stats().await.expect("Stats");
        fitted("Unlock", admin.unlock(u).await);
        fitted("Reset", admin.reset(u).await);
        fitted("Import", admin.import(u, "").await);
    });
}

#[test]
fn the_xml_reader_reads_what_introspection_writes() {
    let xml = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <!-- a comment with <tags> -->
  <interface name="a.B">
    <method name="M">
      <arg name="x" type="s" direction="in"/>
      <arg type='a{sv}'/>
      <arg type="as" direction="out"/>
    </method>
    <method name="N"/>
    <signal name="S"><arg type="u"/></signal>
  </interface>
  <interface name="a.C"/>
</node>"#;
    let found = interfaces(xml);
    let expected: Methods = [
        ("M".into(), "sa{sv}".into(), "as".into()),
        ("N".into(), String::new(), String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(found["a.B"].0, expected);
    assert_eq!(found["a.B"].1, ["signal S"]);
    assert!(found["a.C"].0.is_empty());
}
