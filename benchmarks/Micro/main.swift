// herald-bench: microbenchmarks of Herald's per-request work, run by benchmarks/run.sh.
// Prints one JSON line per benchmark: {"name", "ns_per_op" (CPU time, median of 7 rounds), "min_ns",
// "wall_ns", "iterations"}.
//   swift run -c release herald-bench [--quick] [NAME...]   (names: run only those, e.g. for a profiler)
//   swift run -c release herald-bench smtp PORT [N]         (SMTP throughput, see SMTPThroughput.swift)
//   swift run -c release herald-bench pipeline [--memory] [N] [C]  (the whole path without HTTP, PipelineRun.swift)
import Foundation
import EmailNotifier
import HeraldCore

/// Values the optimizer must keep.
nonisolated(unsafe) var sink = 0

@inline(never)
func consume(_ value: Int) { sink &+= value }

/// Nanoseconds of CPU time used by this process (what `openssl speed` counts too), and of wall time.
func cpuNanoseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

func wallNanoseconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) }

runSMTPBenchmarkIfAsked()
runPipelineBenchmarkIfAsked()

let only = CommandLine.arguments.dropFirst().filter { !$0.hasPrefix("--") }

func measure(_ name: String, iterations: Int, rounds: Int = 7, _ body: () -> Void) {
    guard only.isEmpty || only.contains(name) else { return }
    for _ in 0..<max(1, iterations / 10) { body() }   // warm up
    var cpu: [Double] = []
    var wall: [Double] = []
    for _ in 0..<rounds {
        let (c0, w0) = (cpuNanoseconds(), wallNanoseconds())
        for _ in 0..<iterations { body() }
        cpu.append((cpuNanoseconds() - c0) / Double(iterations))
        wall.append((wallNanoseconds() - w0) / Double(iterations))
    }
    cpu.sort()
    wall.sort()
    func f(_ x: Double) -> String { String(format: "%.1f", x) }
    print(#"{"name":"\#(name)","ns_per_op":\#(f(cpu[rounds / 2])),"min_ns":\#(f(cpu[0])),"wall_ns":\#(f(wall[rounds / 2])),"iterations":\#(iterations)}"#)
}

/// A 1,024-byte Jicoo `guest_booked` body, as benchmarks/gen_bodies.py writes them.
func body(uid: String) -> Data {
    let head = #"{"event":"guest_booked","createdAt":"2026-11-20T01:15:43.000Z","object":{"uid":""#
    let tail = #"","eventTypeUid":"et_consult60","status":"open","timeZone":"Asia/Tokyo","createdAt":"2026-11-20T01:15:42.341Z","updatedAt":"2026-11-20T01:15:42.341Z","startedAt":"2026-11-27T05:00:00.000Z","endedAt":"2026-11-27T06:00:00.000Z","cancelReason":null,"cancelledAt":null,"cancelledBy":null,"contact":{"email":"taro.yamada@example.jp","name":"山田 太郎"},"answers":[{"question":"ご相談内容","content":["料金プランについて"]},{"question":"How did you find out?","content":["SNS","Friend"]}],"tracking":{"utm_campaign":"winter_campaign","utm_source":"twitter","utm_medium":"owned_media","utm_term":"howto","utm_content":""#
    let end = #""}}}"#
    let fixed = head.utf8.count + uid.utf8.count + tail.utf8.count + end.utf8.count
    return Data((head + uid + tail + String(repeating: "p", count: max(0, 1024 - fixed)) + end).utf8)
}

let scale = CommandLine.arguments.contains("--quick") ? 10 : 1
let payload = body(uid: "bk_micro_00000001")
precondition(payload.count == 1024, "the body is \(payload.count) bytes, not 1024")

// HMAC-SHA256 verification through the public API, as the server calls it.
let secret = Secret("bench-secret-0123456789abcdef")
let scheme = JicooSignature(secrets: [secret])
let now = Int64(Date().timeIntervalSince1970)
let signature = scheme.sign(body: payload, timestamp: now, id: "")[0].value
let header: (String) -> String? = { $0 == JicooSignature.headerName ? signature : nil }
do { try scheme.verify(body: payload, header: header, now: now) } catch { fatalError("verify failed: \(error)") }
measure("jicoo_verify_1k", iterations: 200_000 / scale) {
    do { try scheme.verify(body: payload, header: header, now: now); consume(1) } catch { fatalError("\(error)") }
}

// The HMAC alone (OpenSSL context copy + update + final), to split parsing from crypto.
let key = HMAC.Key(secret.bytes)
let prefix = Array("\(now).".utf8)
measure("hmac_sha256_1k", iterations: 200_000 / scale) {
    consume(Int(key.mac(prefix: prefix, payload)[0]))
}

// Decoding: JSON parse, booking fields, ISO 8601 dates.
measure("jicoo_decode_1k", iterations: 100_000 / scale) {
    do {
        let event = try EventSource.jicoo.decode(body: payload, endpoint: "/hooks/jicoo")
        consume(event.name.utf8.count)
    } catch { fatalError("\(error)") }
}

// The whole body as a tree: an event's payload when a route condition, a template or a
// plugin asks for it, and every generic webhook.
measure("json_parse_1k", iterations: 100_000 / scale) {
    do { consume(try JSONValue.parse(payload)["object"] == nil ? 0 : 1) } catch { fatalError("\(error)") }
}

// Rendering a notification with the built-in Japanese templates.
let renderer: Renderer
do { renderer = try Renderer() } catch { fatalError("\(error)") }
let event: Event
do { event = try EventSource.jicoo.decode(body: payload, endpoint: "/hooks/jicoo") } catch { fatalError("\(error)") }
measure("render_ja", iterations: 20_000 / scale) {
    consume(renderer.render(event, locale: .ja).text.utf8.count)
}

// The same without the HTML body, as the file and chat notifiers ask for it.
measure("render_ja_text", iterations: 20_000 / scale) {
    consume(renderer.render(event, locale: .ja, html: false).text.utf8.count)
}

// The JSON the file notifier writes for a delivery: the rendered text as a JSON string and
// the whole body re-serialised as `raw` (FileNotifier.line's two big parts).
let rendered = renderer.render(event, locale: .ja, html: false)
var lineBuffer: [UInt8] = []
lineBuffer.reserveCapacity(4096)
measure("json_line_1k", iterations: 100_000 / scale) {
    lineBuffer.removeAll(keepingCapacity: true)
    JSONValue.writeString(rendered.text, to: &lineBuffer)
    event.payload.write(to: &lineBuffer)
    consume(lineBuffer.count)
}

// The dedupe key of a Jicoo event (event|uid|updatedAt).
measure("dedupe_key", iterations: 200_000 / scale) {
    consume(EventSource.jicoo.dedupeKey(for: event).utf8.count)
}

// Routing one event through three routes: by name only (as before routes had conditions),
// and with conditions (a glob on the guest's email, an answer that contains a word, a regex
// on a body path), compiled when the configuration is loaded, as Herald does.
func routeTable(conditions: Bool) -> RouteTable {
    let extra = conditions ? ["guestEmail: \"*@example.jp\"", "answers: [{ question: ご相談内容, contains: 料金 }]",
                              "where: [{ path: object.uid, regex: \"^bk_\" }]"] : ["", "", ""]
    let yaml = """
        endpoints: [{ path: /hooks/jicoo, secrets: [x] }]
        notifiers:
          a: { kind: smtp, host: localhost, from: a@example.com, to: [b@example.com] }
          b: { kind: smtp, host: localhost, from: a@example.com, to: [b@example.com] }
        routes:
          - { events: [guest_cancelled, host_cancelled], notify: [a], continue: true \(extra[0].isEmpty ? "" : ", " + extra[0]) }
          - { events: ["guest_*"], notify: [a, b], continue: true \(extra[1].isEmpty ? "" : ", " + extra[1]) }
          - { events: ["*"], notify: [b] \(extra[2].isEmpty ? "" : ", " + extra[2]) }
        """
    do {
        return RouteTable(routes: try ConfigLoader(registry: PluginRegistry([EmailNotifier.self]), environment: [:]).load(yaml: yaml).routes)
    } catch { fatalError("\(error)") }
}
let namesOnly = routeTable(conditions: false), withConditions = routeTable(conditions: true)
precondition(namesOnly.targets(for: event).count == 2 && withConditions.targets(for: event).count == 2)
measure("route_3_names", iterations: 1_000_000 / scale) {
    consume(namesOnly.targets(for: event).count)
}
measure("route_3_conditions", iterations: 1_000_000 / scale) {
    consume(withConditions.targets(for: event).count)
}
if sink == 42 { print("") }
