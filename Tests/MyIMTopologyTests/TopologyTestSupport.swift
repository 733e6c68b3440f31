import Foundation
@testable import MyIMTopology

/// The repository's default topology.yaml, found from this file's path.
let defaultTopologyPath: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // MyIMTopologyTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()  // repository root
    .appendingPathComponent("topology.yaml")
    .path

/// A small valid topology; tests break it one key at a time.
let minimalYAML = """
    cluster: test
    loginCenter:
      name: login
      listen: 127.0.0.1:7000
    domains:
      - name: alpha.example
        center:
          name: alpha-center
          listen: 127.0.0.1:7100
        endpoints:
          - name: alpha-ep1
            listen: 127.0.0.1:7201
          - name: alpha-ep2
            listen: 127.0.0.1:7202
    """

/// Parses YAML as `test.yaml` under `/tmp/base`, returning the error it throws (nil if none).
func topologyError(_ yaml: String) -> TopologyError? {
    do {
        _ = try Topology.parse(yaml: yaml, baseDirectory: "/tmp/base", file: "test.yaml")
        return nil
    } catch {
        return error
    }
}

/// A fresh empty directory, removed by the caller.
func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("myim-topology-tests-\(UUID().uuidString)")
        .path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func fileMode(_ path: String) -> Int? {
    KeyFiles.mode(of: path)
}
