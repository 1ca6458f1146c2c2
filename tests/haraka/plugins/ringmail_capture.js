'use strict'
// Test plugin: accepts every recipient and writes each message to
// $RINGMAIL_CAPTURE_DIR as <uuid>.eml (as received, CRLF) and <uuid>.json.
const fs = require('fs')
const path = require('path')

exports.register = function () {
    this.register_hook('rcpt', 'accept_rcpt')
    this.register_hook('queue', 'capture')
}

exports.accept_rcpt = function (next) {
    next(OK)
}

exports.capture = function (next, connection) {
    const txn = connection.transaction
    const dir = process.env.RINGMAIL_CAPTURE_DIR
    const base = path.join(dir, txn.uuid)
    const addr = (a) => (typeof a.address === 'function' ? a.address() : a.address) || ''
    const meta = {
        mail_from: addr(txn.mail_from),
        rcpt_to: txn.rcpt_to.map(addr),
        tls: !!connection.tls.enabled,
    }
    const ws = fs.createWriteStream(`${base}.eml.tmp`)
    ws.on('error', (err) => next(DENYSOFT, `cannot store: ${err}`))
    ws.on('finish', () => {
        fs.writeFileSync(`${base}.json`, JSON.stringify(meta))
        fs.renameSync(`${base}.eml.tmp`, `${base}.eml`)
        next(OK)
    })
    txn.message_stream.pipe(ws, { line_endings: '\r\n' })
}
