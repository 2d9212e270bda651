import Foundation
import Testing

/// What a new user meets first: `--version`, `check`'s report, a port already in use.
@Suite("first run", .serialized)
struct FirstRunTests {
    func writeConfig(_ dir: String, notifierPath: String = "./out.jsonl") throws {
        try """
            storage: { path: ./herald-data }
            endpoints: [{ path: /hooks/jicoo, secrets: [first-run-secret] }]
            notifiers:
              audit: { kind: file, path: \(notifierPath) }
            routes:
              - { events: ["*"], notify: [audit] }
            """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
    }

    @Test func versionNamesTheCommitOrSaysItIsUnknown() async throws {
        let (status, output) = try await runHerald(["--version"])
        #expect(status == 0)
        #expect(output.wholeMatch(of: /0\.3\.0-dev \((commit [0-9a-f]{7,40}(-dirty)?|unknown commit)\)\n/) != nil, "\(output)")
    }

    /// `herald check -c herald.yaml` from the config's folder printed `././herald-data`.
    @Test func checkPrintsPathsAsWritten() async throws {
        let dir = tempDir()
        try writeConfig(dir)
        let (status, output) = try await runHerald(["check", "-c", "herald.yaml"], in: dir)
        #expect(status == 0, "\(output)")
        #expect(output.contains("  storage    herald-data\n"), "\(output)")
        #expect(!output.contains("./"))
    }

    /// A file notifier that cannot write its path used to pass check and start, and then
    /// retried every delivery for 24 hours.
    @Test func unwritableFileNotifierFailsCheckAndStart() async throws {
        let dir = tempDir()
        try writeConfig(dir, notifierPath: "/proc/herald-bookings.jsonl")
        let check = try await runHerald(["check", "-c", "\(dir)/herald.yaml"])
        #expect(check.status == 1)
        #expect(check.output.contains("herald.yaml:4:"), "\(check.output)")
        #expect(check.output.contains("notifiers.audit.path: cannot create /proc/herald-bookings.jsonl"), "\(check.output)")
        let serve = try await runHerald(["serve", "-c", "\(dir)/herald.yaml", "--listen", "127.0.0.1:0"])
        #expect(serve.status == 1)
        #expect(serve.output.contains("notifiers.audit.path: cannot create /proc/herald-bookings.jsonl"), "\(serve.output)")
    }

    /// A second server on the same port ends with one clear line and exit 1, not with an
    /// error about journal maintenance or a CancellationError.
    @Test func portInUseEndsWithOneClearLine() async throws {
        let dir = tempDir()
        try writeConfig(dir)
        let first = try await HeraldProcess(config: "\(dir)/herald.yaml")
        let other = tempDir()
        try writeConfig(other)
        let (status, output) = try await runHerald(["serve", "-c", "\(other)/herald.yaml", "--listen", "127.0.0.1:\(first.port)"])
        #expect(status == 1)
        let lines = output.split(separator: "\n")
        #expect(lines.last == "herald: cannot listen on 127.0.0.1:\(first.port): address already in use", "\(output)")
        #expect(!output.contains("maintenance"), "\(output)")
        #expect(!output.contains("CancellationError"), "\(output)")
        #expect(!output.lowercased().contains("error:"), "\(output)")
        #expect(try await first.stop() == 0)
    }
}
