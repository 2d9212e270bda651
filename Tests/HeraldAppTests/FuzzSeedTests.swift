import Foundation
import HeraldFuzzTargets
import Testing

/// The fuzz targets in the normal build: every seed input (and the shared vectors) passes
/// through its target without tripping an invariant, so the harness itself stays correct
/// between fuzzing runs, and an input that once crashed (saved under fuzz/seeds) stays fixed.
@Suite("fuzz targets replay their seeds")
struct FuzzSeedTests {
    static let seeds = HeraldProcess.repoRoot.appendingPathComponent("fuzz/seeds")

    @Test(arguments: FuzzTargets.all.map(\.name))
    func seedsPassThrough(target name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let directory = Self.seeds.appendingPathComponent(name)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!files.isEmpty, "no seeds for \(name)")
        var inputs = try files.map { try Data(contentsOf: directory.appendingPathComponent($0)) }
        let events = HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events")
        for file in (try? FileManager.default.contentsOfDirectory(atPath: events.path)) ?? [] {
            inputs.append(try Data(contentsOf: events.appendingPathComponent(file)))
        }
        for input in inputs { input.withUnsafeBytes { target.run($0) } }
    }
}
