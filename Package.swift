// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "myim",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "myim", targets: ["myim"]),
        .library(name: "MyIMWire", targets: ["MyIMWire"]),
        .library(name: "MyIMSecureChannel", targets: ["MyIMSecureChannel"]),
        .library(name: "MyIMTransport", targets: ["MyIMTransport"]),
        .library(name: "MyIMTopology", targets: ["MyIMTopology"]),
        .library(name: "MyIMAuth", targets: ["MyIMAuth"]),
        .library(name: "MyIMLoginCenter", targets: ["MyIMLoginCenter"]),
        .library(name: "MyIMClient", targets: ["MyIMClient"]),
        .library(name: "MyIMRedis", targets: ["MyIMRedis"]),
        .library(name: "MyIMPresence", targets: ["MyIMPresence"]),
        .library(name: "MyIMLink", targets: ["MyIMLink"]),
        .library(name: "MyIMCenter", targets: ["MyIMCenter"]),
        .library(name: "MyIMEndpoint", targets: ["MyIMEndpoint"]),
        .library(name: "MyIMOps", targets: ["MyIMOps"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // Layers 2 and 3 of the wire format: typed values, packets, messages. No sockets, no crypto.
        .target(
            name: "MyIMWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The secure channel: handshake state machines, key schedule, layer-1 frame protection.
        // AES-256-GCM in place through the system's libcrypto (libssl-dev): a cipher context per
        // thread, re-keyed per frame. Linux only; elsewhere frames go through swift-crypto.
        .target(
            name: "CMyIMAEAD",
            linkerSettings: [.linkedLibrary("crypto", .when(platforms: [.linux]))]
        ),
        // Pure: it transforms bytes and returns actions; it never touches a socket.
        .target(
            name: "MyIMSecureChannel",
            dependencies: [
                "MyIMWire",
                .target(name: "CMyIMAEAD", condition: .when(platforms: [.linux])),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // Thin NIO shells around the state machines, plus the client's known-servers file.
        .target(
            name: "MyIMTransport",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // topology.yaml: the cluster's shape, its loader, and the key directory `myim keys init` fills.
        .target(
            name: "MyIMTopology",
            dependencies: [
                "MyIMSecureChannel",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // Tokens (jwt-kit, EdDSA) and the signed server list: issued by the login center,
        // verified offline by endpoints and clients.
        .target(
            name: "MyIMAuth",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Opening a role's own SQLite file (GRDB, WAL, migrations), the same way everywhere.
        .target(
            name: "MyIMStorage",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // The login center: accounts (GRDB), password hashing, rate limits, the login flows.
        .target(
            name: "MyIMLoginCenter",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMTopology",
                "MyIMAuth",
                "MyIMLink",
                "MyIMStorage",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // hiredis, used only as the RESP codec (the socket I/O stays on NIO's event loops).
        // No pkgConfig: hiredis.pc carries -D_FILE_OFFSET_BITS=64, which SwiftPM warns about;
        // the header is in /usr/include and the module map links the library.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // A Redis client on NIO: commands encoded and replies decoded by hiredis, pipelined.
        .target(
            name: "MyIMRedis",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Who is online where: the Redis key schema, and an in-memory twin for all-in-one mode.
        .target(
            name: "MyIMPresence",
            dependencies: [
                "MyIMRedis",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Server-to-server links (endpoint ↔ center): layer-2 packets over mutual TLS or plain
        // TCP, and the link's own messages (2001+).
        .target(
            name: "MyIMLink",
            dependencies: [
                "MyIMWire",
                "MyIMTopology",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        // The center: one per domain; sessions, routing, friendships and offline messages.
        .target(
            name: "MyIMCenter",
            dependencies: [
                "MyIMWire",
                "MyIMLink",
                "MyIMPresence",
                "MyIMTopology",
                "MyIMStorage",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The endpoint: client connections, token auth, relaying to the center, presence heartbeats.
        .target(
            name: "MyIMEndpoint",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMAuth",
                "MyIMLink",
                "MyIMPresence",
                "MyIMTopology",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Operations: /metrics (Prometheus text from swift-metrics) and /health over NIO HTTP/1.1.
        .target(
            name: "MyIMOps",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The load generator's own logic for `myim bench`: latency histogram (HdrHistogram), rate pacing,
        // /proc readers, the pairs generator, and a minimal MQTT 3.1.1 client and mosquitto runner for the reference.
        .target(
            name: "MyIMBench",
            dependencies: [
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Helpers for the test targets only (a real redis-server on a free port, …).
        .target(
            name: "MyIMTestSupport",
            dependencies: [
                "MyIMRedis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The client library: MYIM_HOME, register, login, the saved session.
        .target(
            name: "MyIMClient",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMAuth",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "myim",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMTopology",
                "MyIMAuth",
                "MyIMLoginCenter",
                "MyIMClient",
                "MyIMLink",
                "MyIMCenter",
                "MyIMEndpoint",
                "MyIMPresence",
                "MyIMOps",
                "MyIMBench",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MyIMWireTests",
            dependencies: ["MyIMWire"],
            resources: [.copy("Fuzz")]
        ),
        .testTarget(
            name: "MyIMSecureChannelTests",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            resources: [.copy("Vectors")]
        ),
        .testTarget(
            name: "MyIMTransportTests",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MyIMRedisTests",
            dependencies: [
                "MyIMRedis",
                "MyIMTestSupport",
                "MyIMPresence",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "MyIMMessagingTests",
            dependencies: [
                "MyIMTestSupport",
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMTopology",
                "MyIMAuth",
                "MyIMLink",
                "MyIMCenter",
                "MyIMEndpoint",
                "MyIMPresence",
                "MyIMRedis",
                "MyIMClient",
                "MyIMLoginCenter",
                "MyIMOps",
                "MyIMBench",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MyIMTopologyTests",
            dependencies: [
                "MyIMTopology",
                "MyIMSecureChannel",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MyIMLoginCenterTests",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
                "MyIMTopology",
                "MyIMAuth",
                "MyIMLoginCenter",
                "MyIMClient",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
