import Crypto
import Foundation
@testable import MyIMSecureChannel
import MyIMTopology
import Testing
import X509

@Suite("myim keys init: the key directory")
struct ClusterKeysTests {
    /// The default topology, with its paths resolved under a fresh temporary directory.
    private static func topology(in base: String) throws -> Topology {
        let yaml = try String(contentsOfFile: defaultTopologyPath, encoding: .utf8)
        return try Topology.parse(yaml: yaml, baseDirectory: base, file: "topology.yaml")
    }

    private static func expectedFiles(_ topology: Topology) -> [String] {
        let keys = ClusterKeys(directory: topology.keysDirectory)
        var files = [keys.tokenSigningKeyPath, keys.caCertificatePath, keys.caKeyPath]
        for node in topology.allNodes {
            files += [keys.identityKeyPath(for: node.name), keys.certificatePath(for: node.name), keys.certificateKeyPath(for: node.name)]
        }
        return files
    }

    @Test("init creates every file 0600 in a 0700 directory; a second run keeps them; --force replaces them")
    func initializeIsIdempotent() throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let topology = try Self.topology(in: base)
        #expect(topology.keysDirectory == base + "/.myim/keys")

        let first = try ClusterKeys.initialize(for: topology)
        // 4 identity keys, the token key, the CA, 4 leaves.
        #expect(first.count == 10)
        #expect(first.allSatisfy { $0.created })
        #expect(fileMode(topology.keysDirectory) == 0o700)
        let files = Self.expectedFiles(topology)
        for file in files {
            #expect(fileMode(file) == 0o600, "\(file)")
        }
        let listing = try FileManager.default.contentsOfDirectory(atPath: topology.keysDirectory)
        #expect(Set(listing) == Set(files.map { ($0 as NSString).lastPathComponent }), "no stray temporary files")
        for file in files where file.hasSuffix(".identity.pem") || file.hasSuffix("key.pem") || file.hasSuffix("token-signing.pem") {
            // PKCS#8 for every private key, which OpenSSL, NIOSSL and jwt-kit all read.
            #expect(try String(contentsOfFile: file, encoding: .utf8).hasPrefix("-----BEGIN PRIVATE KEY-----"), "\(file)")
        }
        #expect(first.first { $0.name == "login" }?.kind == "identity rsa-2048")
        #expect(first.first { $0.name == "alpha-ep1" }?.kind == "identity ed25519")

        let second = try ClusterKeys.initialize(for: topology)
        #expect(second.allSatisfy { !$0.created })
        #expect(second.map(\.fingerprint) == first.map(\.fingerprint))
        #expect(second.map(\.name) == first.map(\.name))

        let forced = try ClusterKeys.initialize(for: topology, force: true)
        #expect(forced.allSatisfy { $0.created })
        for (old, new) in zip(first, forced) {
            #expect(old.fingerprint != new.fingerprint, "\(old.name) \(old.kind) was not replaced")
        }
        for file in files {
            #expect(fileMode(file) == 0o600, "\(file)")
        }
    }

    @Test("identity keys load, sign and verify, and their fingerprints are the ones init printed")
    func identityKeys() throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let topology = try Self.topology(in: base)
        let reports = try ClusterKeys.initialize(for: topology)
        let keys = ClusterKeys(topology: topology)

        for node in topology.allNodes {
            let key = try keys.identityKey(for: node.name)
            let publicKey = try keys.identityPublicKey(for: node.name)
            #expect(publicKey == key.publicKey)
            #expect(publicKey.type == (node.identity == .rsa ? .rsaPSS : .ed25519))
            let printed = reports.first { $0.name == node.name && $0.kind.hasPrefix("identity") }?.fingerprint
            #expect(printed == publicKey.fingerprint.description)
            #expect(KeyFingerprint(publicKeyDER: publicKey.spki) == publicKey.fingerprint)

            let message = Array("transcript of \(node.name)".utf8)
            let signature = try key.signature(for: message)
            #expect(publicKey.isValidSignature(signature, for: message))
            #expect(!publicKey.isValidSignature(signature, for: message + [0]))
        }

        let token = try keys.tokenSigningKey()
        let tokenPublic = try keys.tokenPublicKey()
        #expect(tokenPublic.rawRepresentation == token.publicKey.rawRepresentation)
        let claims = Array("claims".utf8)
        let tokenSignature = try token.signature(for: claims)
        #expect(tokenPublic.isValidSignature(tokenSignature, for: claims))
        let printed = reports.first { $0.name == "token-signing" }?.fingerprint
        #expect(printed == KeyFingerprint(publicKeyDER: ServerIdentityKey(ed25519: token).publicKey.spki).description)
    }

    @Test("leaf certificates verify against the cluster CA for both TLS roles and name their node")
    func certificates() async throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let topology = try Self.topology(in: base)
        _ = try ClusterKeys.initialize(for: topology)
        let keys = ClusterKeys(topology: topology)
        let ca = try keys.caCertificate()
        #expect(ca.subject == ca.issuer)
        let constraints = try ca.extensions.basicConstraints
        #expect(constraints == .isCertificateAuthority(maxPathLength: 0))

        for node in topology.allNodes {
            let leaf = try keys.certificate(for: node.name)
            #expect(leaf.issuer == ca.subject)
            #expect(ca.publicKey.isValidSignature(leaf.signature, for: leaf))
            #expect(leaf.publicKey == Certificate.PublicKey(try keys.certificatePrivateKey(for: node.name).publicKey))

            let usages = try #require(try leaf.extensions.extendedKeyUsage)
            #expect(usages.contains(.serverAuth) && usages.contains(.clientAuth))
            let names = try #require(try leaf.extensions.subjectAlternativeNames)
            #expect(names.contains(.dnsName(node.name)))

            let listen = try #require(topology.listenAddress(of: node.name))
            var verifier = Verifier(rootCertificates: CertificateStore([ca])) {
                RFC5280Policy()
                ServerIdentityPolicy(serverHostname: node.name, serverIP: "\(listen.host):\(listen.port)")
            }
            let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore())
            guard case .validCertificate(let chain) = result else {
                Issue.record("\(node.name): \(result)")
                continue
            }
            #expect(chain.last == ca)
        }
    }

    @Test("a leaf whose listen host changed is reissued without --force; keys and CA are kept")
    func leafFollowsTopology() throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        var topology = try Self.topology(in: base)
        let first = try ClusterKeys.initialize(for: topology)
        topology.domains[0].endpoints[0].listen = HostPort(host: "10.0.0.5", port: 7201)
        topology.domains[0].endpoints[0].advertise = HostPort(host: "10.0.0.5", port: 7201)
        let second = try ClusterKeys.initialize(for: topology)
        let changed = second.filter(\.created)
        #expect(changed.count == 1)
        #expect(changed.first?.name == "alpha-ep1" && changed.first?.kind == "tls-cert p-256")
        #expect(second.first { $0.name == "ca" }?.fingerprint == first.first { $0.name == "ca" }?.fingerprint)
    }

    @Test("errors name the file and the remedy")
    func errors() throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        var topology = try Self.topology(in: base)

        let missing = ClusterKeys(topology: topology)
        #expect {
            try missing.identityKey(for: "login")
        } throws: { error in
            let error = error as? KeyError
            return error?.code == .missing && error?.file == missing.identityKeyPath(for: "login")
                && error?.description.contains("run `myim keys init --topology topology.yaml`") == true
        }

        _ = try ClusterKeys.initialize(for: topology)
        let keys = ClusterKeys(topology: topology)

        // A private key other users can read is refused, as ssh does.
        chmod(keys.tokenSigningKeyPath, 0o644)
        #expect {
            try keys.tokenSigningKey()
        } throws: { error in
            (error as? KeyError)?.code == .permissions && (error as? KeyError)?.description.contains("chmod 600") == true
        }
        chmod(keys.tokenSigningKeyPath, 0o600)

        // Garbage where a key should be.
        try "not a key".write(toFile: keys.identityKeyPath(for: "alpha-ep2"), atomically: false, encoding: .utf8)
        chmod(keys.identityKeyPath(for: "alpha-ep2"), 0o600)
        #expect {
            try keys.identityKey(for: "alpha-ep2")
        } throws: { error in
            (error as? KeyError)?.code == .malformed && (error as? KeyError)?.file == keys.identityKeyPath(for: "alpha-ep2")
        }
        _ = try ClusterKeys.initialize(for: topology, force: true)

        // The topology asks for another key kind than the file holds.
        topology.domains[0].endpoints[0].identity = .rsa
        #expect {
            try ClusterKeys.initialize(for: topology)
        } throws: { error in
            (error as? KeyError)?.code == .wrongKind && (error as? KeyError)?.description.contains("--force") == true
        }
    }
}
