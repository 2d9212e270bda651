import Foundation
import HeraldFuzzTargets

// The libFuzzer driver, for the target HERALD_FUZZ_TARGET names. `fuzz/run.sh` builds this with
// HERALD_FUZZ_BUILD=1, which links libFuzzer and defines HERALD_FUZZING; this file's top-level
// code hands libFuzzer the command line (`LLVMFuzzerRunDriver`), since SwiftPM points the
// executable's `main` here rather than at libFuzzer's own. Built without it, it says so.

#if HERALD_FUZZING
let selected: FuzzTargets.Target? = ProcessInfo.processInfo.environment["HERALD_FUZZ_TARGET"].flatMap(FuzzTargets.named)
guard selected != nil else {
    FileHandle.standardError.write(Data("set HERALD_FUZZ_TARGET to one of: \(FuzzTargets.all.map(\.name).joined(separator: ", "))\n".utf8))
    exit(2)
}

/// libFuzzer's entry point for a program that has its own `main`.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// One input for the selected target. libFuzzer's library refers to this name too.
@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected?.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, testOneInput))
#else
FileHandle.standardError.write(Data("herald-fuzz was built without libFuzzer; run fuzz/run.sh\n".utf8))
exit(2)
#endif
