import Foundation
import MyIMTopology
import Testing

@Suite("Loading topology.yaml")
struct TopologyLoadingTests {
    @Test("the repository's topology.yaml loads with the documented values")
    func defaultTopology() throws {
        let topology = try Topology.load(path: defaultTopologyPath)
        let root = (defaultTopologyPath as NSString).deletingLastPathComponent

        #expect(topology.cluster == "myim-local")
        #expect(topology.redis == "redis://127.0.0.1:6379/0")
        #expect(topology.links == .tls)
        #expect(topology.dataDirectory == root + "/.myim/data")
        #expect(topology.keysDirectory == root + "/.myim/keys")
        #expect(topology.logLevel == "info")

        let login = topology.loginCenter
        #expect(login.name == "login")
        #expect(login.listen == HostPort(host: "127.0.0.1", port: 7000))
        #expect(login.advertise == login.listen)
        #expect(login.identity == .rsa)
        #expect(login.tokenLifetimeSeconds == 86_400)
        #expect(login.metrics == HostPort(host: "127.0.0.1", port: 9100))

        #expect(topology.domains.count == 1)
        let alpha = try #require(topology.domain(named: "alpha.example"))
        #expect(alpha.center == CenterNode(
            name: "alpha-center", listen: HostPort(host: "127.0.0.1", port: 7100), identity: .rsa,
            metrics: HostPort(host: "127.0.0.1", port: 9101)
        ))
        #expect(alpha.endpoints == [
            EndpointNode(
                name: "alpha-ep1", listen: HostPort(host: "127.0.0.1", port: 7201), priority: 10, identity: .ed25519,
                metrics: HostPort(host: "127.0.0.1", port: 9201)
            ),
            EndpointNode(
                name: "alpha-ep2", listen: HostPort(host: "127.0.0.1", port: 7202), priority: 20, identity: .ed25519,
                metrics: HostPort(host: "127.0.0.1", port: 9202)
            ),
        ])
        #expect(topology.domain(named: "beta.example") == nil)

        #expect(topology.allNodes == [
            NodeDescriptor(name: "login", role: .loginCenter, identity: .rsa, domain: nil),
            NodeDescriptor(name: "alpha-center", role: .center, identity: .rsa, domain: "alpha.example"),
            NodeDescriptor(name: "alpha-ep1", role: .endpoint, identity: .ed25519, domain: "alpha.example"),
            NodeDescriptor(name: "alpha-ep2", role: .endpoint, identity: .ed25519, domain: "alpha.example"),
        ])
    }

    @Test("every key of topology.yaml has a comment")
    func defaultTopologyIsCommented() throws {
        let lines = try String(contentsOfFile: defaultTopologyPath, encoding: .utf8).split(separator: "\n")
        for (index, line) in lines.enumerated() {
            let trimmed = line.drop { $0 == " " || $0 == "-" }
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let previous = index > 0 ? lines[index - 1].drop { $0 == " " } : ""
            #expect(previous.hasPrefix("#"), "line \(index + 1) `\(line)` has no comment above it")
        }
    }

    @Test("defaults fill what a minimal topology leaves out")
    func defaults() throws {
        let yaml = """
            cluster: tiny
            domains:
              - name: local
                center: {name: c, listen: "127.0.0.1:7100"}
                endpoints:
                  - {name: e, listen: "[::1]:7201"}
            """
        let topology = try Topology.parse(yaml: yaml, baseDirectory: "/srv/myim", file: "tiny.yaml")
        #expect(topology.redis == "redis://127.0.0.1:6379/0")
        #expect(topology.links == .tls)
        #expect(topology.dataDirectory == "/srv/myim/.myim/data")
        #expect(topology.keysDirectory == "/srv/myim/.myim/keys")
        #expect(topology.logLevel == "info")
        #expect(topology.loginCenter == LoginCenterNode(name: "login"))
        #expect(topology.loginCenter.listen.description == "127.0.0.1:7000")
        #expect(topology.loginCenter.advertise == topology.loginCenter.listen)
        #expect(topology.loginCenter.tokenLifetimeSeconds == 86_400)
        #expect(topology.loginCenter.metrics == nil)
        let endpoint = try #require(topology.domains.first?.endpoints.first)
        #expect(endpoint.listen == HostPort(host: "::1", port: 7201))
        #expect(endpoint.advertise == endpoint.listen)
        #expect(endpoint.priority == 100)
        #expect(endpoint.identity == .ed25519)
        #expect(topology.domains.first?.center.identity == .rsa)
        #expect(topology.file == "tiny.yaml")
    }

    @Test("relative and absolute paths")
    func paths() throws {
        let yaml = minimalYAML + "\npaths:\n  data: ../var/data\n  keys: /etc/myim/keys\n"
        let topology = try Topology.parse(yaml: yaml, baseDirectory: "/srv/myim/conf", file: "t.yaml")
        #expect(topology.dataDirectory == "/srv/myim/var/data")
        #expect(topology.keysDirectory == "/etc/myim/keys")
    }

    @Test("a missing file names itself")
    func missingFile() {
        #expect {
            try Topology.load(path: "/nonexistent/topology.yaml")
        } throws: { error in
            let error = error as? TopologyError
            return error?.file == "/nonexistent/topology.yaml" && error?.message.contains("does not exist") == true
        }
    }
}

@Suite("HostPort")
struct HostPortTests {
    @Test("parses IPv4, bracketed IPv6 and names, and round-trips through description",
          arguments: [
              ("127.0.0.1:7000", "127.0.0.1", 7000),
              ("[::1]:7000", "::1", 7000),
              ("[2001:db8::42]:443", "2001:db8::42", 443),
              ("alpha-ep1.internal:7201", "alpha-ep1.internal", 7201),
              ("0.0.0.0:1", "0.0.0.0", 1),
          ])
    func parses(text: String, host: String, port: Int) throws {
        let value = try #require(HostPort(text))
        #expect(value == HostPort(host: host, port: port))
        #expect(value.description == text)
        #expect(HostPort(value.description) == value)
    }

    @Test("refuses what is not host:port",
          arguments: ["127.0.0.1", ":7000", "host:", "host:70000", "host:-1", "host:7o00", "::1:7000", "[::1]7000", "[nope]:7000", "a b:1"])
    func refuses(text: String) {
        #expect(HostPort(text) == nil)
    }
}
