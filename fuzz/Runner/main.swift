import Foundation
import HeraldFuzzTargets

// The libFuzzer entry point (built with `--sanitize=fuzzer`; `fuzz/run.sh` does it). The
// target comes from HERALD_FUZZ_TARGET; without the fuzzer this binary does nothing.

let selected: FuzzTargets.Target? = ProcessInfo.processInfo.environment["HERALD_FUZZ_TARGET"].flatMap(FuzzTargets.named)

@_cdecl("LLVMFuzzerTestOneInput")
public func herald_fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selected else {
        FileHandle.standardError.write(Data("set HERALD_FUZZ_TARGET to one of: \(FuzzTargets.all.map(\.name).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    target.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}
