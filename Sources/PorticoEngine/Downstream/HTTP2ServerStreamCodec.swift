//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import PorticoCore

/// One HTTP/2 stream's frames as the HTTP/1-style parts `ProxyHandler` reads and writes, on the stream channel's
/// EventLoop (the connection's). It replaces NIOHTTP2's `HTTP2FramePayloadToHTTP1ServerCodec` with the same
/// mapping at fewer copies per stream: a response head becomes its HPACK block in one pass (NIO's builds an
/// `HTTPHeaders` with `:status` first, then the block from it, and reads the `Connection` field into an array even
/// when there is none), and names already in lower case are not lowercased again.
///
/// The mapping (RFC 9113 §8.3): `:method`, `:path` and `:authority` become the request line and `Host` (when the
/// request has none); a request of a method that may carry content, without `content-length`, gets
/// `content-length: 0` when the HEADERS end the stream and `transfer-encoding: chunked` otherwise (as NIO's codec
/// does: `ProxyHandler` frames bodies for the upstream itself); a second HEADERS block is the trailers. The
/// connection's `NIOHTTP2Handler` has validated the header block already (pseudo-header fields present, once,
/// first; RFC 9113 §8.3.1). On the way out, connection-specific fields are removed (RFC 9113 §8.2.2) and names
/// lowercased (§8.2).
final class HTTP2ServerStreamCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var receivedHead = false
    private var checkedExtendedConnect = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .headers(let headers):
            if !self.checkedExtendedConnect {
                self.checkedExtendedConnect = true
                if Self.hasProtocol(headers.headers) { return self.startExtendedConnect(context: context, data: data) }
            }
            if self.receivedHead {
                context.fireChannelRead(self.wrapInboundOut(.end(Self.regularFields(headers.headers))))
                return
            }
            self.receivedHead = true
            let head: HTTPRequestHead
            switch Self.requestHead(headers.headers, endStream: headers.endStream) {
            case .success(let h): head = h
            case .failure(let missing):
                // Without `:method` (the connection's validation lets no request through without it).
                context.fireErrorCaught(missing)
                return
            }
            context.fireChannelRead(self.wrapInboundOut(.head(head)))
            if headers.endStream { context.fireChannelRead(self.wrapInboundOut(.end(nil))) }
        case .data(let frame):
            guard case .byteBuffer(let buffer) = frame.data else { return }
            if frame.endStream && buffer.readableBytes == 0 {
                context.fireChannelRead(self.wrapInboundOut(.end(nil)))
                return
            }
            context.fireChannelRead(self.wrapInboundOut(.body(buffer)))
            if frame.endStream { context.fireChannelRead(self.wrapInboundOut(.end(nil))) }
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload: HTTP2Frame.FramePayload
        switch self.unwrapOutboundIn(data) {
        case .head(let head):
            payload = .headers(.init(headers: Self.block(status: head.status.code, head.headers)))
        case .body(let body):
            payload = .data(.init(data: body))
        case .end(let trailers):
            if let trailers {
                payload = .headers(.init(headers: Self.block(status: nil, trailers), endStream: true))
            } else {
                payload = .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
            }
        }
        context.write(self.wrapOutboundOut(payload), promise: promise)
    }

    /// An extended CONNECT (RFC 8441 `:protocol`): `HTTP2ExtendedConnectHandler` goes in front of this codec and
    /// takes the HEADERS (it hands a WebSocket request on rewritten as an HTTP/1.1 upgrade, anything else as it
    /// is). Only such streams get it: every other stream saves the handler, its context and its removal.
    private func startExtendedConnect(context: ChannelHandlerContext, data: NIOAny) {
        let connect = HTTP2ExtendedConnectHandler()
        do {
            try context.pipeline.syncOperations.addHandler(connect, position: .before(self))
            connect.channelRead(context: try context.pipeline.syncOperations.context(handler: connect), data: data)
        } catch {
            context.fireErrorCaught(error)
        }
    }

    /// Whether the block has `:protocol` (pseudo-header fields come first: RFC 9113 §8.3, validated).
    private static func hasProtocol(_ block: HPACKHeaders) -> Bool {
        for (name, _, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else { return false }
            if name == ":protocol" { return true }
        }
        return false
    }

    // MARK: The mapping

    static func requestHead(_ block: HPACKHeaders, endStream: Bool) -> Result<HTTPRequestHead, NIOHTTP2Errors.MissingPseudoHeader> {
        var method: String?
        var path: String?
        var authority: String?
        var hasHost = false
        var hasLength = false
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block {
            if name.utf8.first == UInt8(ascii: ":") {
                switch name {
                case ":method": method = value
                case ":path": path = value
                case ":authority": authority = value
                default: break  // :scheme, :protocol (the extended CONNECT handler has seen it)
                }
                continue
            }
            if !hasHost && name == "host" { hasHost = true }
            if !hasLength && name == "content-length" { hasLength = true }
            fields.append((name, value))
        }
        guard let method else { return .failure(NIOHTTP2Errors.missingPseudoHeader(":method")) }
        // No `:path` (a plain CONNECT) or no authority at all (`:authority` nor `host`, RFC 9113 §8.3.1): passed on
        // as an empty target or without Host, which `ProxyHandler` answers with a 400 as for HTTP/1.1.
        if !hasHost, let authority { fields.insert(("host", authority), at: 0) }
        let m = HTTPMethod(rawValue: method)
        switch m {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE:
            break
        default:
            if !hasLength { fields.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked")) }
        }
        return .success(HTTPRequestHead(version: HTTPVersion(major: 2, minor: 0), method: m, uri: path ?? "", headers: HTTPHeaders(fields)))
    }

    static func regularFields(_ block: HPACKHeaders) -> HTTPHeaders {
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { fields.append((name, value)) }
        return HTTPHeaders(fields)
    }

    /// `:status` (for a head) and the fields, lowercased, without connection-specific ones (RFC 9113 §8.2.2).
    static func block(status: UInt?, _ fields: HTTPHeaders) -> HPACKHeaders {
        var block = HPACKHeaders()
        block.reserveCapacity(fields.count + 1)
        if let status { block.add(name: ":status", value: String(status)) }
        let connection = fields.contains(name: "connection") ? fields[canonicalForm: "connection"] : []
        for (name, value) in fields {
            let lower = Self.lowercased(name)
            if Self.isConnectionSpecific(lower) || connection.contains(where: { $0.caseInsensitiveASCIIEqual(lower) }) {
                continue
            }
            block.add(name: lower, value: value)
        }
        return block
    }

    /// RFC 9113 §8.2.2's connection-specific fields (a lower-case name): by length first, so a field per response
    /// costs no hashing.
    static func isConnectionSpecific(_ name: String) -> Bool {
        switch name.utf8.count {
        case 10: return name == "connection" || name == "keep-alive"
        case 16: return name == "proxy-connection"
        case 17: return name == "transfer-encoding"
        case 7: return name == "upgrade"
        default: return false
        }
    }

    /// `name` in lower case; the same string (no copy) when it is already.
    private static func lowercased(_ name: String) -> String {
        name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? name.lowercased() : name
    }
}
