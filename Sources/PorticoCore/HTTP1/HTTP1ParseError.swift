//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Why `HTTP1RequestParser` refused a request. Every case ends the connection: after a framing error the byte
/// stream cannot be trusted to hold a next request (RFC 9112 §11.2).
package struct HTTP1ParseError: Error, Hashable, Sendable, CustomStringConvertible {
    package enum Kind: String, Hashable, Sendable {
        case invalidRequestLine = "invalid request line"
        case invalidMethod = "invalid method"
        case invalidTarget = "invalid request target"
        case unsupportedVersion = "unsupported HTTP version"
        case invalidVersion = "invalid HTTP version"
        case bareLineFeed = "bare LF line end"
        case bareCarriageReturn = "bare CR"
        case obsFold = "obs-fold line"
        case invalidFieldName = "invalid field name"
        case whitespaceBeforeColon = "whitespace before colon"
        case invalidFieldValue = "control character in field value"
        case missingHost = "missing Host"
        case repeatedHost = "more than one Host"
        case invalidHost = "invalid Host"
        case hostMismatch = "absolute-form target disagrees with Host"
        case invalidContentLength = "invalid Content-Length"
        case repeatedContentLength = "more than one Content-Length"
        case contentLengthWithTransferEncoding = "Content-Length with Transfer-Encoding"
        case transferEncodingNotChunked = "Transfer-Encoding does not end in chunked"
        case unsupportedTransferCoding = "unsupported transfer coding"
        case transferEncodingOnHTTP10 = "Transfer-Encoding on HTTP/1.0"
        case invalidChunkSize = "invalid chunk size"
        case invalidChunkExtension = "invalid chunk extension"
        case invalidChunkEnd = "chunk data not followed by CRLF"
        case headTooLarge = "request head too large"
        case tooManyFields = "too many header fields"
        case uriTooLong = "request target too long"
        case trailersTooLarge = "trailer section too large"
        /// A response's first line (`HTTP1ResponseParser`).
        case invalidStatusLine = "invalid status line"
    }

    package var kind: Kind

    package init(_ kind: Kind) { self.kind = kind }

    /// The status a server answers with (RFC 9110 §15, RFC 6585 §5 for 431, RFC 9112 §6.1 for 501).
    package var status: Int {
        switch self.kind {
        case .headTooLarge, .tooManyFields, .trailersTooLarge: return 431
        case .uriTooLong: return 414
        case .unsupportedVersion: return 505
        case .unsupportedTransferCoding: return 501
        default: return 400
        }
    }

    package var description: String { self.kind.rawValue }
}
