/** One line of `yqp-trt doctor`: what was checked, whether it passed, and what to do when it did not. */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  solutions?: string[];
}
