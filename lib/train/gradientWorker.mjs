// Entry point of a gradient worker thread: registers tsx in this thread, which does not
// inherit the main thread's loader, then loads the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./gradientWorker.ts');
