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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
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
        // Pure: it transforms bytes and returns actions; it never touches a socket.
        .target(
            name: "MyIMSecureChannel",
            dependencies: [
                "MyIMWire",
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
        .executableTarget(
            name: "myim",
            dependencies: [
                "MyIMWire",
                "MyIMSecureChannel",
                "MyIMTransport",
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
    ],
    swiftLanguageModes: [.v6]
)
