//! The two line formats of `[log] format`, as tracing-subscriber formatters: [`Json`] (one
//! object per line, every value a plain JSON value) and [`Pretty`] (`key=value` text, colour
//! only on a terminal).
//!
//! Both put the fields of the spans a line was logged in (the request span: `request_id`,
//! `client`, `route`, `user_id`) beside the line's own, flat: a handler's warning carries the
//! request id of its access line. A field the line sets itself wins over a span's of the same
//! name. Access lines (target [`ACCESS_TARGET`]) carry exactly their fields: no target, no
//! message, no span but the request's.
//!
//! Lines that dependencies write through the `log` crate (rustls) carry their own target and
//! level, as tracing-subscriber's formats show them.
//!
//! Neither format lets a logged value forge a line: JSON escapes control characters, and the
//! pretty format quotes a string that is not plain and escapes control characters everywhere.
//!
//! A span's fields are formatted once, when the span is made or a field recorded, and stored
//! as text (tracing-subscriber's `FormattedFields`), members separated by [`SEP`] so a line can
//! leave out the members its own fields replace.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::{ACCESS_TARGET, REQUEST_SPAN};

/// Separates the members of a span's stored fields. Never part of a member: both formats
/// escape control characters in values.
const SEP: char = '\u{1f}';
/// [`SEP`] as text.
const SEP_STR: &str = "\u{1f}";

/// One JSON object per line: `timestamp`, `level`, `target`, `message`, the fields, then the
/// span fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

/// `TIMESTAMP LEVEL target: message key=value ...`, the span fields last.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pretty;

impl<S> FormatEvent<S, Json> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, Json>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let access = meta.target() == ACCESS_TARGET;
        w.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut w)?;
        write!(w, "\",\"level\":\"{}\"", meta.level().as_str())?;
        if !access {
            w.write_str(",\"target\":")?;
            json_str(&mut w, meta.target())?;
        }
        let mut fields = JsonFields::new(&mut w, ",", false);
        event.record(&mut fields);
        fields.result?;
        span_fields(ctx, event, access, &mut w, ",", json_name)?;
        w.write_str("}\n")
    }
}

impl<'w> FormatFields<'w> for Json {
    fn format_fields<R: RecordFields>(&self, mut w: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = JsonFields::new(&mut w, SEP_STR, true);
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        add_separated(self, current, fields)
    }
}

impl<S> FormatEvent<S, Pretty> for Pretty
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, Pretty>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let ansi = w.has_ansi_escapes();
        SystemTime.format_time(&mut w)?;
        let (on, off) = if ansi {
            (level_colour(*meta.level()), RESET)
        } else {
            ("", "")
        };
        write!(w, " {on}{:>5}{off} ", meta.level().as_str())?;
        let (dim, off) = if ansi { (DIM, RESET) } else { ("", "") };
        write!(w, "{dim}{}:{off}", meta.target())?;
        // The message first, then the other fields.
        let mut message = PrettyFields::new(&mut w, " ", false, Part::Message);
        event.record(&mut message);
        message.result?;
        let mut fields = PrettyFields::new(&mut w, " ", false, Part::Fields);
        event.record(&mut fields);
        fields.result?;
        let access = meta.target() == ACCESS_TARGET;
        span_fields(ctx, event, access, &mut w, " ", |m| {
            m.split_once('=').map(|(n, _)| n)
        })?;
        w.write_char('\n')
    }
}

impl<'w> FormatFields<'w> for Pretty {
    fn format_fields<R: RecordFields>(&self, mut w: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = PrettyFields::new(&mut w, SEP_STR, true, Part::All);
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        add_separated(self, current, fields)
    }
}

/// Appends fields recorded later to a span's stored fields, after [`SEP`].
fn add_separated<'w, F: FormatFields<'w>>(
    format: &F,
    current: &'w mut FormattedFields<F>,
    fields: &tracing::span::Record<'_>,
) -> fmt::Result {
    if !current.fields.is_empty() {
        current.fields.push(SEP);
    }
    format.format_fields(current.as_writer(), fields)
}

/// Writes the stored fields of the spans `event` is in, outermost first, each member after
/// `before`, leaving out members whose name (`name_of`) is one of the event's own fields.
/// An access line takes the request span's fields only.
fn span_fields<S, N>(
    ctx: &FmtContext<'_, S, N>,
    event: &Event<'_>,
    access: bool,
    w: &mut Writer<'_>,
    before: &str,
    name_of: fn(&str) -> Option<&str>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let Some(scope) = ctx.event_scope() else {
        return Ok(());
    };
    let own = event.metadata().fields();
    for span in scope.from_root() {
        if access && !(span.name() == REQUEST_SPAN && span.metadata().target() == ACCESS_TARGET) {
            continue;
        }
        let extensions = span.extensions();
        let Some(stored) = extensions.get::<FormattedFields<N>>() else {
            continue;
        };
        for member in stored.fields.split(SEP).filter(|m| !m.is_empty()) {
            if name_of(member).is_some_and(|name| own.field(name).is_some()) {
                continue;
            }
            w.write_str(before)?;
            w.write_str(member)?;
        }
    }
    Ok(())
}

/// The name of a stored JSON member `"name":value` (names are written unescaped: they are
/// the identifiers of the logging call).
fn json_name(member: &str) -> Option<&str> {
    member.strip_prefix('"')?.split_once('"').map(|(n, _)| n)
}

/// Writes fields as JSON members `"name":value`, each after `before` but the first when
/// `first`.
struct JsonFields<'a, 'w> {
    w: &'a mut Writer<'w>,
    before: &'a str,
    first: bool,
    result: fmt::Result,
}

impl<'a, 'w> JsonFields<'a, 'w> {
    fn new(w: &'a mut Writer<'w>, before: &'a str, first: bool) -> Self {
        Self {
            w,
            before,
            first,
            result: Ok(()),
        }
    }

    /// Writes the separator and `"name":`, then the value with `value`.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.w.write_str(self.before)?;
            }
            json_str(self.w, field.name())?;
            self.w.write_char(':')?;
            value(self.w)
        })();
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| json_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(EscapeJson(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(EscapeJson(&mut *w), "{}", ErrorChain(value))?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become strings.
        if value.is_finite() {
            self.member(field, |w| write!(w, "{value}"));
        } else {
            self.member(field, |w| write!(w, "\"{value}\""));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }
}

/// Whether `field` is one of the `log.target`, `log.file`... fields that carry a `log` record's
/// metadata (the line shows it as its own: `normalized_metadata`).
fn is_log_metadata(field: &Field) -> bool {
    field.name().starts_with("log.")
}

/// Writes `s` as a JSON string.
fn json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    EscapeJson(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string (RFC 8259 §7): quote, backslash
/// and control characters (DEL too, so a terminal showing the raw line is not steered).
/// serde_json has no escaping writer for `fmt::Write`, and values formatted with `Debug` or
/// `Display` are escaped as they are written, without an intermediate `String`.
struct EscapeJson<W>(W);

impl<W: fmt::Write> fmt::Write for EscapeJson<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// Which fields a pretty visitor writes: the message alone, the others, or all (span fields).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Message,
    Fields,
    All,
}

/// Writes fields as `name=value`, each after `before` but the first when `first`; the
/// message (in [`Part::Message`]) as plain text.
struct PrettyFields<'a, 'w> {
    w: &'a mut Writer<'w>,
    before: &'a str,
    first: bool,
    part: Part,
    result: fmt::Result,
}

impl<'a, 'w> PrettyFields<'a, 'w> {
    fn new(w: &'a mut Writer<'w>, before: &'a str, first: bool, part: Part) -> Self {
        Self {
            w,
            before,
            first,
            part,
            result: Ok(()),
        }
    }

    /// Writes the field with `value` when it belongs to this visitor's part.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        let is_message = field.name() == "message";
        let wanted = match self.part {
            Part::Message => is_message,
            Part::Fields => !is_message,
            Part::All => true,
        };
        if !wanted || self.result.is_err() || is_log_metadata(field) {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.w.write_str(self.before)?;
            }
            if self.part != Part::Message {
                write!(self.w, "{}=", field.name())?;
            }
            value(self.w)
        })();
    }
}

impl Visit for PrettyFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| {
            // A value that could be misread (blank, quotes, control characters) is quoted
            // and escaped; `Debug` of a string does both.
            if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
                w.write_str(value)
            } else {
                write!(w, "{value:?}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| write!(EscapeControl(w), "{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| write!(EscapeControl(w), "{}", ErrorChain(value)));
    }
}

/// Escapes control characters and the bidirectional-text controls (`\n`, `\u{1b}`,
/// `\u{202e}`) in what it is given: a value cannot break the line, steer a terminal or
/// reorder what a reader sees.
struct EscapeControl<W>(W);

impl<W: fmt::Write> fmt::Write for EscapeControl<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most values are printable ASCII: one pass over the bytes, then one write.
        if s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let steers = c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if steers {
                self.0.write_str(&s[start..i])?;
                write!(self.0, "{}", c.escape_default())?;
                start = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[start..])
    }
}

/// An error and its causes, `outer: inner: innermost`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";

/// The colour of a level on a terminal.
fn level_colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io;
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::telemetry::{record_route, record_user, request_span};

    /// A writer into a shared buffer, so a test reads what a subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Runs `f` under a subscriber of this module's `format`, and returns the lines written.
    fn logged<F, N>(format: F, ansi: bool, f: impl FnOnce()) -> Vec<String>
    where
        F: FormatEvent<tracing_subscriber::Registry, N> + Send + Sync + 'static,
        N: for<'w> FormatFields<'w> + Default + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(ansi)
            .with_max_level(Level::TRACE)
            .fmt_fields(N::default())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        out.lines()
    }

    /// A request as the gateway logs it: a handler's warning, a line of its own, the access
    /// line.
    fn a_request() {
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let span = request_span("rid-1", client);
        let _entered = span.enter();
        record_route("/api");
        record_user(42);
        tracing::warn!(target: "authgate::proxy::forward", route = "/api", "upstream failed");
        tracing::info!(
            target: "authgate::routes::passwords",
            username = "eve\n\u{1b}[31m",
            grace = ?std::time::Duration::from_secs(30),
            ok = true,
            ratio = 0.5,
            "password check failed"
        );
        crate::telemetry::access(&crate::telemetry::AccessRecord {
            method: &http::Method::GET,
            path: "/api/\"x\"",
            route: "/api",
            status: http::StatusCode::BAD_GATEWAY,
            latency: std::time::Duration::from_micros(1500),
            error: Some("bad_gateway"),
        });
    }

    #[test]
    fn json_lines_are_objects_of_plain_values_with_the_request_fields_flat() {
        let lines = logged::<_, Json>(Json, false, a_request);
        let lines: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        let [warning, own, access] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert_eq!(warning["message"], "upstream failed");
        assert_eq!(warning["target"], "authgate::proxy::forward");
        assert_eq!(warning["level"], "WARN");
        assert_eq!(warning["request_id"], "rid-1");
        assert_eq!(warning["client"], "192.0.2.7");
        assert_eq!(warning["route"], "/api");
        assert_eq!(warning["user_id"], 42);
        // The line's own `route` wins over the span's: one key, not two.
        let raw = serde_json::to_string(warning).unwrap();
        assert_eq!(raw.matches("\"route\"").count(), 1, "{raw}");

        assert_eq!(own["username"], "eve\n\u{1b}[31m");
        assert_eq!(own["grace"], "30s");
        assert_eq!(own["ok"], true);
        assert_eq!(own["ratio"], 0.5);
        assert_eq!(own["request_id"], "rid-1");

        let keys: Vec<&str> = access
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "client",
                "error",
                "latency_us",
                "level",
                "method",
                "path",
                "request_id",
                "route",
                "status",
                "timestamp",
                "user_id"
            ]
        );
        assert_eq!(access["path"], "/api/\"x\"");
        assert_eq!(access["status"], 502);
        assert_eq!(access["latency_us"], 1500);
        assert_eq!(access["error"], "bad_gateway");
    }

    #[test]
    fn log_crate_records_show_their_own_target_without_metadata_fields() {
        let record = |format_args| {
            tracing_log::format_trace(
                &log::Record::builder()
                    .target("rustls::conn")
                    .level(log::Level::Warn)
                    .module_path_static(Some("rustls::conn"))
                    .file_static(Some("conn.rs"))
                    .line(Some(7))
                    .args(format_args)
                    .build(),
            )
            .unwrap();
        };
        let json = logged::<_, Json>(Json, false, || record(format_args!("sent an alert")));
        let v: Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(v["target"], "rustls::conn", "{v}");
        assert_eq!(v["level"], "WARN", "{v}");
        assert_eq!(v["message"], "sent an alert", "{v}");
        assert!(!json[0].contains("log."), "{}", json[0]);
        let pretty = logged::<_, Pretty>(Pretty, false, || record(format_args!("sent an alert")));
        assert!(
            pretty[0].ends_with("  WARN rustls::conn: sent an alert"),
            "{}",
            pretty[0]
        );
    }

    #[test]
    fn json_lines_are_single_lines_whatever_a_value_holds() {
        let lines = logged::<_, Json>(Json, false, || {
            tracing::info!(text = "a\nb\r\"c\"\\\u{0}\u{7f}\u{1b}", debug = ?"q\n", "m\n");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["text"], "a\nb\r\"c\"\\\u{0}\u{7f}\u{1b}");
        assert_eq!(v["debug"], "\"q\\n\"");
        assert_eq!(v["message"], "m\n");
    }

    #[test]
    fn json_strings_round_trip_through_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}",
            "unicode é 漢字 😀 \u{2028}",
        ] {
            let mut ours = String::new();
            json_str(&mut ours, s).unwrap();
            let parsed: String = serde_json::from_str(&ours).unwrap();
            assert_eq!(parsed, s, "{ours}");
        }
    }

    #[test]
    fn pretty_lines_quote_what_is_not_plain_and_colour_only_when_asked() {
        let lines = logged::<_, Pretty>(Pretty, false, a_request);
        let [warning, own, access] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert!(
            warning.ends_with(
                " WARN authgate::proxy::forward: upstream failed route=/api request_id=rid-1 \
                 client=192.0.2.7 user_id=42"
            ),
            "{warning}"
        );
        assert!(
            own.contains(
                r#"password check failed username="eve\n\u{1b}[31m" grace=30s ok=true ratio=0.5 "#
            ),
            "{own}"
        );
        assert!(
            access.ends_with(
                r#" INFO authgate::access: method=GET path="/api/\"x\"" route=/api status=502 latency_us=1500 error=bad_gateway request_id=rid-1 client=192.0.2.7 user_id=42"#
            ),
            "{access}"
        );
        assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");

        let coloured = logged::<_, Pretty>(Pretty, true, a_request);
        assert!(
            coloured[0].contains("\u{1b}[33m WARN\u{1b}[0m"),
            "{:?}",
            coloured[0]
        );
        // A colour code in a value is still escaped.
        assert!(coloured[1].contains(r"\u{1b}[31m"), "{:?}", coloured[1]);
    }

    #[test]
    fn pretty_debug_and_display_values_cannot_break_the_line() {
        let lines = logged::<_, Pretty>(Pretty, false, || {
            let text = "a\nforged\u{202e}x";
            tracing::info!(shown = %text, debugged = ?text, "m\u{1b}");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with(r#"m\u{1b} shown=a\nforged\u{202e}x debugged="a\nforged\u{202e}x""#),
            "{}",
            lines[0]
        );
    }
}
