import https from 'node:https';
import fs from 'node:fs';
const P = fs.readFileSync('/tmp/w4/port','utf8').trim();
const ca = fs.readFileSync('/tmp/w4/v/tls/ca.pem');
function req(agent) { return new Promise((res, rej) => { const r = https.request({host:'127.0.0.1', port:P, path:'/healthz', method:'GET', ca, agent}, (s) => { s.resume(); s.on('end', () => res(s.statusCode)); }); r.on('error', rej); r.end(); }); }
let t = Date.now(); for (let i=0;i<20;i++) await req(false); console.log('no keepalive', (Date.now()-t)/20, 'ms');
const ag = new https.Agent({keepAlive:true, maxSockets: 6});
t = Date.now(); for (let i=0;i<20;i++) await req(ag); console.log('keepalive', (Date.now()-t)/20, 'ms');
t = Date.now(); await Promise.all(Array.from({length:60}, () => req(ag))); console.log('keepalive x6 conc', (Date.now()-t)/60, 'ms');
ag.destroy();
